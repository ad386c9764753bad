"""The edge locked down (issue 14): reloads coalesced and old workers bounded in time, the fetch
server and the token helper answer nginx alone, the edge's files are 0640, and upstream TLS is
never unverified."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import time
from dataclasses import replace
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accelerator.services import tenant_rotate, tenant_start
from edge import render as edge_config
from edge.gate_sync import gate_sync
from edge.run_dir import edge_render
from tests.conftest import require
from tests.e2e import harness

pytestmark = pytest.mark.e2e


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the fetch server and the token helper answer nginx alone ---------------------------------


def test_a_local_client_without_the_secret_gets_nothing_from_fetch_or_token_server(
    edge, upstream, make_tenant, db
):
    image = upstream.images["small"]
    layer = image.image.layers[0]
    blob_path = f"/v2/{image.repo}/blobs/{layer.digest}"
    fetch_port = int(edge.params.fetch_listen.rsplit(":", 1)[1])
    token_port = int(edge.params.token_listen.rsplit(":", 1)[1])
    tenant = make_tenant()
    # Through the edge, the tenant gets the blob (nginx sends the secret).
    served = edge.get(tenant.label, blob_path)
    assert served.status == 200 and served.body == layer.data

    secret = edge.params.internal_secret
    for headers in (
        [],
        [("X-Edge-Secret", "")],
        [("X-Edge-Secret", "0" * len(secret))],
        [("X-Edge-Secret", secret[:-1])],
        [("X-Edge-Secret", secret + "x")],
        [("X-Edge-Secret", secret.upper() if secret.upper() != secret else "A" * 64)],
        [("X-Edge-Tenant", tenant.label)],
    ):
        got = harness.request(fetch_port, "GET", blob_path, host="x", headers=headers)
        assert got.status == 403, (headers, got.status)
        assert layer.data not in got.body
        head = harness.request(fetch_port, "HEAD", blob_path, host="x", headers=headers)
        assert head.status == 403
        token = harness.request(
            token_port,
            "GET",
            "/token",
            host="x",
            headers=[("X-Original-URI", blob_path), *headers],
        )
        assert token.status == 403 and "X-Upstream-Authorization" not in token.headers
    # The secret is what makes the difference (the token helper answers it; this upstream
    # needs no token, so the answer carries none).
    ok = harness.request(
        token_port,
        "GET",
        "/token",
        host="x",
        headers=[("X-Original-URI", blob_path), ("X-Edge-Secret", secret)],
    )
    assert ok.status == 200


@pytest.mark.parametrize(
    "key, value, setting",
    [
        ("fetch_listen", "0.0.0.0:8481", "EDGE_FETCH_LISTEN"),
        ("fetch_listen", "[::]:8481", "EDGE_FETCH_LISTEN"),
        ("fetch_listen", "10.1.2.3:8481", "EDGE_FETCH_LISTEN"),
        ("fetch_listen", "localhost:8481", "EDGE_FETCH_LISTEN"),
        ("fetch_listen", "edge.example.io:8481", "EDGE_FETCH_LISTEN"),
        ("token_listen", "0.0.0.0:8482", "EDGE_TOKEN_LISTEN"),
        ("token_listen", "[::]:8482", "EDGE_TOKEN_LISTEN"),
        ("token_listen", "192.168.0.1:8482", "EDGE_TOKEN_LISTEN"),
        ("verify_listen", "0.0.0.0:8484", "EDGE_VERIFY_LISTEN"),
        ("verify_listen", "[::]:8484", "EDGE_VERIFY_LISTEN"),
        ("verify_listen", "10.1.2.3:8484", "EDGE_VERIFY_LISTEN"),
        ("verify_listen", "localhost:8484", "EDGE_VERIFY_LISTEN"),
    ],
)
def test_render_refuses_internal_listeners_off_loopback(key, value, setting):
    params = replace(harness.RENDER_PARAMS, **{key: value})
    with pytest.raises(edge_config.EdgeConfigError, match=setting):
        edge_config.nginx_conf("@@FETCH_LISTEN@@", params)


@pytest.mark.parametrize("value", ["127.0.0.1:8481", "127.0.0.2:9", "[::1]:8481"])
def test_loopback_listeners_are_accepted(value):
    edge_config.nginx_conf(
        "x",
        replace(harness.RENDER_PARAMS, fetch_listen=value, token_listen=value, verify_listen=value),
    )


def test_a_local_client_without_the_secret_gets_nothing_from_the_digest_check(
    edge, upstream, make_tenant, db
):
    """The digest check keeps no secret: it passes the caller's on, and the fetch server (its
    /@fill read-ahead too) answers nothing without the edge's, cached blob or not."""
    image = upstream.images["small"]
    layer = image.image.layers[0]
    blob_path = f"/v2/{image.repo}/blobs/{layer.digest}"
    verify_port = int(edge.params.verify_listen.rsplit(":", 1)[1])
    fetch_port = int(edge.params.fetch_listen.rsplit(":", 1)[1])
    tenant = make_tenant()
    served = edge.get(tenant.label, blob_path)  # now in the cache
    assert served.status == 200 and served.body == layer.data
    secret = edge.params.internal_secret
    for path in (blob_path, f"{blob_path}?ns=docker.io", f"{blob_path}?ns=nowhere.example"):
        for headers in (
            [],
            [("X-Edge-Secret", "")],
            [("X-Edge-Secret", "0" * len(secret))],
            [("X-Edge-Secret", secret[:-1])],
            [("X-Edge-Tenant", tenant.label)],
            [("X-Edge-Secret", secret[:-1]), ("Range", "bytes=0-")],
        ):
            got = harness.request(verify_port, "GET", path, host="x", headers=headers)
            assert got.status == 403, (path, headers, got.status)
            assert layer.data not in got.body and layer.data[:64] not in got.body
            fill = harness.request(fetch_port, "GET", "/@fill" + path, host="x", headers=headers)
            assert fill.status == 403, (path, headers, fill.status)
            assert layer.data[:64] not in fill.body
    # With the secret (what nginx sends) the same request is a blob: the 403s were the secret's.
    ok = harness.request(
        verify_port, "GET", blob_path, host="x", headers=[("X-Edge-Secret", secret)]
    )
    assert ok.status == 200 and ok.body == layer.data


def test_the_digest_check_refuses_to_listen_off_loopback(settings, tmp_path):
    from edge import blob_verify

    for listen, fetch in (("0.0.0.0:8484", "127.0.0.1:8481"), ("127.0.0.1:8484", "10.0.0.1:80")):
        with pytest.raises(edge_config.EdgeConfigError, match="loopback"):
            blob_verify.main(["--listen", listen, "--fetch", fetch, "--cache-dir", str(tmp_path)])
    settings.EDGE_RUN_DIR = tmp_path / "edge"
    settings.EDGE_VERIFY_LISTEN = "0.0.0.0:8484"
    with pytest.raises(edge_config.EdgeConfigError, match="EDGE_VERIFY_LISTEN must be a loopback"):
        call_command("edge_verify")


@pytest.mark.parametrize(
    "secret", ["", "short", "x" * 31, "a" * 40 + ";", "a" * 40 + '"', "é" * 40]
)
def test_render_refuses_a_bad_internal_secret(secret):
    with pytest.raises(edge_config.EdgeConfigError, match="internal secret"):
        edge_config.nginx_conf("x", replace(harness.RENDER_PARAMS, internal_secret=secret))


def test_edge_token_command_refuses_off_loopback_and_without_a_secret(settings, tmp_path):
    settings.EDGE_RUN_DIR = tmp_path / "edge"
    settings.EDGE_TOKEN_LISTEN = "0.0.0.0:8482"
    with pytest.raises(CommandError, match="EDGE_TOKEN_LISTEN must be a loopback"):
        call_command("edge_token")
    settings.EDGE_TOKEN_LISTEN = f"127.0.0.1:{harness.free_port()}"
    with pytest.raises(CommandError, match="run edge_render first"):
        call_command("edge_token")


def test_the_token_helper_does_not_start_without_a_secret():
    from edge.token_helper import TokenCache, make_handler

    with pytest.raises(ValueError, match="internal secret"):
        make_handler(TokenCache("http://127.0.0.1:9"), "")


# --- upstream TLS is verified or refused ------------------------------------------------------


def test_render_refuses_https_upstream_without_a_ca_bundle(settings, tmp_path):
    settings.EDGE_RUN_DIR = tmp_path / "edge"
    settings.EDGE_CACHE_DIR = tmp_path / "cache"
    settings.EDGE_REGISTRY_STORAGE_DIR = tmp_path / "registry"
    settings.EDGE_ACCESS_LOG = tmp_path / "edge" / "logs" / "access.log"
    settings.EDGE_WORKER_USER = "root"  # no nginx runs here; pytest's directories are closed
    settings.UPSTREAM_URL = "https://registry.example.io"
    for bundle in ("", str(tmp_path / "missing.pem"), str(tmp_path)):
        settings.EDGE_UPSTREAM_CA_BUNDLE = bundle
        with pytest.raises(CommandError, match="EDGE_UPSTREAM_CA_BUNDLE"):
            call_command("edge_render")
        assert not (tmp_path / "edge" / "nginx.conf").exists()
    # A plain-http upstream (loopback tests, a registry next door) needs none.
    settings.UPSTREAM_URL = "http://127.0.0.1:5001"
    settings.EDGE_UPSTREAM_CA_BUNDLE = ""
    call_command("edge_render")
    assert "proxy_ssl_verify" not in (tmp_path / "edge" / "nginx.conf").read_text()
    # With a bundle, https is verified.
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    settings.UPSTREAM_URL = "https://registry.example.io"
    settings.EDGE_UPSTREAM_CA_BUNDLE = str(bundle)
    call_command("edge_render")
    text = (tmp_path / "edge" / "nginx.conf").read_text()
    assert "proxy_ssl_verify on;" in text and f"proxy_ssl_trusted_certificate {bundle};" in text


def test_params_refuse_https_upstream_without_a_ca_bundle():
    with pytest.raises(edge_config.EdgeConfigError, match="EDGE_UPSTREAM_CA_BUNDLE"):
        edge_config.nginx_conf("x", replace(harness.RENDER_PARAMS, ca_bundle=None))


# --- files 0640 -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_gate_map_logs_and_rendered_configs_are_0640(settings, request, owner):
    require(harness.which("nginx") is not None, "nginx is not installed")
    workdir = harness.worker_readable_dir("e2e-modes-")
    request.addfinalizer(lambda: shutil.rmtree(workdir, ignore_errors=True))
    run_dir = workdir / "edge"
    settings.EDGE_RUN_DIR = run_dir
    settings.EDGE_ACCESS_LOG = run_dir / "logs" / "access.log"
    settings.EDGE_REGISTRY_STORAGE_DIR = workdir / "registry"
    settings.EDGE_CACHE_DIR = workdir / "cache"
    settings.EDGE_LISTEN = f"127.0.0.1:{harness.free_port()}"
    settings.EDGE_FETCH_LISTEN = f"127.0.0.1:{harness.free_port()}"
    settings.EDGE_TOKEN_LISTEN = f"127.0.0.1:{harness.free_port()}"
    settings.EDGE_HEALTH_LISTEN = f"127.0.0.1:{harness.free_port()}"
    settings.UPSTREAM_URL = "http://127.0.0.1:9"
    files = edge_render()
    call_command("deploy_render")
    logs = run_dir / "logs"
    expected = [
        files.nginx_conf,
        files.gate_map,
        files.internal_secret,
        logs / "access.log",
        logs / "fetch.log",
        logs / "error.log",
        run_dir / "logrotate.conf",
    ]
    for path in expected:
        assert _mode(path) & 0o037 == 0, f"{path} is {oct(_mode(path))}"
    assert _mode(files.registry_conf) == 0o600
    # nginx appends to the files it was given and keeps their mode.
    nginx = harness.Proc.start("nginx", harness.nginx_cmd(run_dir), log=logs / "nginx.out")
    request.addfinalizer(lambda: nginx.stop())
    port = int(settings.EDGE_LISTEN.rsplit(":", 1)[1])
    harness.wait_port(port, proc=nginx)
    assert harness.request(port, "GET", "/v2/", host="nobody.m.localhost").status == 404
    deadline = time.monotonic() + 10
    os.kill(nginx.pid, signal.SIGUSR1)  # flush and reopen, as logrotate's postrotate does
    while not (logs / "access.log").stat().st_size:
        assert time.monotonic() < deadline, "nginx wrote no access-log line"
        time.sleep(0.1)
    for path in (logs / "access.log", logs / "error.log"):
        assert _mode(path) & 0o037 == 0, f"{path} is {oct(_mode(path))}"
    # The gate sync rewrites the map 0640 too.
    tenant_start(user=owner)
    assert gate_sync().changed
    assert _mode(files.gate_map) & 0o037 == 0


# --- reloads: coalesced, and old workers bounded in time ----------------------------------------


def _shutting_down(master: int) -> set[int]:
    found = set()
    for pid in harness.child_pids(master):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"shutting down" in title:
            found.add(pid)
    return found


def _open_download(port: int, host: str, path: str) -> socket.socket:
    """A GET whose body the client reads only when the test says so (a slow download)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"closed before the headers: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return sock


def _drain(sock: socket.socket, *, within: float) -> int:
    """Bytes received until the server closes (bounded)."""
    total = 0
    deadline = time.monotonic() + within
    sock.settimeout(within)
    while True:
        assert time.monotonic() < deadline, "the download was not closed"
        chunk = sock.recv(1 << 16)
        if not chunk:
            return total
        total += len(chunk)


@pytest.mark.django_db(transaction=True)
def test_ten_rotations_with_slow_downloads_leave_no_old_worker_after_the_timeout(
    upstream, settings, request, owner
):
    require(harness.which("nginx") is not None, "nginx is not installed")
    shutdown = 4
    settings.EDGE_GATE_SYNC_SECONDS = 1
    workdir = harness.worker_readable_dir("e2e-reloads-")
    request.addfinalizer(lambda: shutil.rmtree(workdir, ignore_errors=True))
    edge = harness.start_edge(
        workdir,
        upstream_url=upstream.registry.url,
        name=settings.EDGE_NAME,
        mirror_domain=settings.MIRROR_DOMAIN,
        worker_processes="1",
        worker_shutdown_seconds=shutdown,
        tenant_rate=64 * 1024,  # a 32 MB layer takes minutes: every download outlives a reload
    )
    request.addfinalizer(edge.stop)
    image = upstream.images["large"]
    layer = image.image.layers[0]
    path = f"/v2/{image.repo}/blobs/{layer.digest}"
    tenant = tenant_start(user=owner)

    syncs: list[tuple[float, bool]] = []

    def sync_until_reloaded() -> None:
        """The real sync, repeated until it reloads; returns once the workers that ran before
        accept no more requests (gone, or shutting down with their downloads)."""
        before = harness.child_pids(edge.nginx.pid)
        deadline = time.monotonic() + 15
        while True:
            result = gate_sync(run_dir=edge.run_dir)
            syncs.append((time.monotonic(), result.reloaded))
            if result.reloaded:
                while before & harness.child_pids(edge.nginx.pid) - _shutting_down(edge.nginx.pid):
                    assert time.monotonic() < deadline, "the old workers still accept"
                    time.sleep(0.02)
                return
            assert result.pending or not result.changed
            assert time.monotonic() < deadline, "the gate map was never reloaded"
            time.sleep(0.05)

    def wait_status(label: str, status: int) -> None:
        deadline = time.monotonic() + 15
        while edge.get(label, "/v2/").status != status:
            assert time.monotonic() < deadline, f"{label} never answered {status}"
            time.sleep(0.05)

    sync_until_reloaded()
    wait_status(tenant.label, 200)
    downloads = []
    for _ in range(10):
        downloads.append(_open_download(edge.port, edge.host(tenant.label), path))
        old = tenant.label
        tenant = tenant_rotate(tenant=tenant, limited=False)
        sync_until_reloaded()
        wait_status(old, 404)
        wait_status(tenant.label, 200)
    try:
        # Old workers are still serving the downloads right after the last reload...
        assert _shutting_down(edge.nginx.pid), "no old worker: the downloads did not outlive"
        # ...and none is left once the timeout has passed (nginx closes their connections).
        deadline = time.monotonic() + shutdown + 30
        while _shutting_down(edge.nginx.pid):
            assert time.monotonic() < deadline, "old workers outlived worker_shutdown_timeout"
            time.sleep(0.2)
        for sock in downloads:
            assert _drain(sock, within=30) < layer.size  # cut, not completed
    finally:
        for sock in downloads:
            sock.close()
    # Coalesced: never two reloads within 0.9 of the interval, however fast the changes came.
    reload_times = [t for t, reloaded in syncs if reloaded]
    assert len(reload_times) == 11
    gaps = [b - a for a, b in zip(reload_times, reload_times[1:], strict=False)]
    assert min(gaps) >= 0.9 * settings.EDGE_GATE_SYNC_SECONDS - 0.05, gaps
    assert any(not reloaded for _, reloaded in syncs), "no change had to wait for its reload"


@pytest.mark.django_db
def test_a_burst_of_gate_changes_reloads_nginx_once_per_interval(settings, request, owner):
    """Without any download open: five changes in a row give one reload; the rest are
    pending until the next sync after the interval, which applies them all at once."""
    require(harness.which("nginx") is not None, "nginx is not installed")
    from accounts.models import User

    workdir = harness.worker_readable_dir("e2e-burst-")
    request.addfinalizer(lambda: shutil.rmtree(workdir, ignore_errors=True))
    params = harness.edge_params(
        workdir, upstream_url="http://127.0.0.1:9", name="burst", mirror_domain="m.localhost"
    )
    nginx = harness.start_nginx(params)
    request.addfinalizer(nginx.stop)
    settings.EDGE_GATE_SYNC_SECONDS = 3600  # within this test, one reload at most
    first = gate_sync(run_dir=params.run_dir)
    assert first.reloaded
    results = []
    for i in range(5):
        user = User.objects.create_user(email=f"burst{i}@example.com", password="x-123456789")
        tenant_start(user=user)
        results.append(gate_sync(run_dir=params.run_dir))
    assert all(r.changed and r.pending and not r.reloaded for r in results)
    # Due now (a later interval): one reload brings the last map, with all five.
    applied = gate_sync(run_dir=params.run_dir, reload_every=0)
    assert applied.reloaded and not applied.changed and not applied.pending
    assert not gate_sync(run_dir=params.run_dir, reload_every=0).reloaded  # nothing new


def test_nginx_config_carries_the_shutdown_timeout_and_the_secret():
    params = replace(harness.RENDER_PARAMS, worker_shutdown_seconds=45)
    text = edge_config.nginx_conf(
        (harness.DEPLOY / "nginx" / "edge.conf.template").read_text(), params
    )
    assert "worker_shutdown_timeout 45s;" in text
    # Sent to the fetch server and the token helper, never upstream: the fetch server's two
    # upstream locations (the registry, the blob store it redirects to) drop it.
    # Blob GETs, gated ranges and blob HEADs send it; the fetch server checks it; the token.
    assert text.count(params.internal_secret) == 5
    assert text.count('proxy_set_header X-Edge-Secret "";') == 2
    for bad in (0, -1, 86401):
        with pytest.raises(edge_config.EdgeConfigError, match="EDGE_WORKER_SHUTDOWN_SECONDS"):
            edge_config.nginx_conf("x", replace(harness.RENDER_PARAMS, worker_shutdown_seconds=bad))
