"""`make run` with UPSTREAMS: one more pull-through registry per upstream, on
EDGE_REGISTRY_LISTEN's port + its position, pulling from that upstream; a bad UPSTREAMS stops
it before anything starts, naming the setting."""

from __future__ import annotations

import socket
import subprocess

from tests.deploy.test_make_run import (
    _ctrl_c,
    _env,
    _recorded_pids,
    _start,
    _wait_http,
    var,  # noqa: F401  (the fixture)
)
from tests.e2e import harness


def _two_free_ports() -> int:
    """A port whose next port is free too (the first upstream's registry takes it)."""
    for _ in range(50):
        port = harness.free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


def test_make_run_starts_a_registry_per_upstream(tmp_path, var):  # noqa: F811
    fake = harness.start_registry(tmp_path / "fake-ghcr", name="fake-ghcr")
    try:
        image = harness.make_image(files={"a": b"ghcr through make run"})
        harness.push_image(fake.port, "org/tool", "1.0", image)
        base = _two_free_ports()
        env = {
            **_env(var),
            "EDGE_REGISTRY_LISTEN": f"127.0.0.1:{base}",
            "UPSTREAMS": f"ghcr.io={fake.url}",
        }
        log = tmp_path / "run.log"
        proc = _start(env, log)
        try:
            answer = _wait_http(
                base + 1,
                "/v2/org/tool/manifests/1.0",
                host="127.0.0.1",
                proc=proc,
                log=log,
            )
            assert answer.status == 200, answer.body
            manifest = harness.request(
                base + 1,
                "GET",
                "/v2/org/tool/manifests/1.0",
                host="127.0.0.1",
                headers=[("Accept", harness.MT_MANIFEST)],
            )
            assert harness.sha256_digest(manifest.body) == image.digest
            assert (var / "edge" / "registry-ghcr.io.yml").exists()
            # The seven of make run (the digest check among them), and ghcr.io's registry.
            assert len(_recorded_pids(var)) == 8
        finally:
            status = _ctrl_c(proc)
        assert status == 0, log.read_text()[-4000:]
    finally:
        fake.stop()


def test_make_run_with_a_bad_upstreams_stops_naming_it(tmp_path):
    base = harness.worker_readable_dir("make-run-")
    env = {**_env(base / "var"), "UPSTREAMS": "ghcr=https://ghcr.io"}
    done = subprocess.run(
        ["bash", "scripts/run.sh"],
        env=env,
        cwd=harness.ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "UPSTREAMS" in output and "not a registry host name" in output
    assert not (base / "var" / "run.pids").exists()
