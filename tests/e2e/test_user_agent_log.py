"""The access log's ua field with hostile User-Agents: bounded, printable, the line readable
by ingestion and the request charged as usual."""

from __future__ import annotations

import pytest

from ingest.parser import parse_line

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]


@pytest.mark.parametrize(
    ("agent", "logged"),
    [
        ("docker/24.0.7 go/go1.20.10", "docker/24.0.7 go/go1.20.10"),
        ("x" * 5000, "x" * 256),  # cut at 256
        ('a"b\\\\c","tenant":"evil', 'a"b\\\\c","tenant":"evil'),  # escaped, still one field
        (b"podman/4\xff\xfe rest", "podman/4"),  # cut at the first byte that is not printable
        ("", ""),
    ],
)
def test_user_agent_is_logged_bounded_and_escaped(edge, make_tenant, agent, logged):
    tenant = make_tenant()
    headers = [("User-Agent", agent)] if agent else []
    if isinstance(agent, bytes):
        from tests.e2e import harness

        raw = (
            b"GET /v2/ HTTP/1.1\r\nHost: "
            + edge.host(tenant.label).encode()
            + b"\r\nUser-Agent: "
            + agent
            + b"\r\nConnection: close\r\n\r\n"
        )
        assert b" 200 " in harness.raw_request(edge.port, raw).split(b"\r\n", 1)[0]
    else:
        assert edge.get(tenant.label, "/v2/", headers=headers).status == 200
    edge.flush_log()
    raw_lines = [
        raw for raw in edge.access_log.read_bytes().splitlines() if tenant.label.encode() in raw
    ]
    assert len(raw_lines) == 1
    record = parse_line(raw_lines[0])  # ingestion reads it: no malformed line, no free bytes
    assert record.ua == logged
    assert record.tenant == tenant.label and record.body_bytes_sent == 2


def test_skopeo_is_recognised_from_its_own_agent(edge, upstream, make_tenant, skopeo):
    from accelerator.clients import Client, client_from_agent

    tenant = make_tenant()
    small = upstream.images["small"]
    result = skopeo.inspect(f"docker://{edge.host(tenant.label)}/{small.repo}:{small.tag}")
    assert result.returncode == 0, result.stderr
    agents = {x["ua"] for x in edge.log_lines() if x["tenant"] == tenant.label}
    assert agents and all(client_from_agent(a).kind == Client.SKOPEO for a in agents), agents


def test_podman_is_recognised_from_its_own_agent(edge, upstream, make_tenant, tmp_path_factory):
    import os
    import shutil
    import subprocess

    from accelerator.clients import Client, client_from_agent
    from tests.e2e.conftest import _require_parts

    _require_parts("podman")
    tenant = make_tenant()
    small = upstream.images["small"]
    base = tmp_path_factory.mktemp("pm")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(base),
        "XDG_CONFIG_HOME": str(base / "config"),
        "XDG_RUNTIME_DIR": str(base / "run"),
    }
    (base / "run").mkdir()
    done = subprocess.run(
        [
            shutil.which("podman"),
            f"--root={base / 'root'}",
            f"--runroot={base / 'runroot'}",
            "--storage-driver=vfs",
            "--cgroup-manager=cgroupfs",
            "--events-backend=none",
            "pull",
            "--tls-verify=false",
            f"{edge.host(tenant.label)}/{small.repo}:{small.tag}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    agents = {x["ua"] for x in edge.log_lines() if x["tenant"] == tenant.label}
    assert agents and all(client_from_agent(a).kind == Client.PODMAN for a in agents), agents
