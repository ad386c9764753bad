"""The edge's systemd units, run: their own command lines start a working edge.

There is no systemd PID 1 here, so the test does what systemd would for an instance: the
unit's Environment= lines (with %i), then the environment files (production settings, and
the per-edge file pointing the edge's directories and ports into a temporary directory),
then ExecStartPre/ExecStart with ${VAR}/$VAR and specifiers expanded, install path pointed
at this checkout. Rendered configs, registry, token helper, nginx and the edge's Celery
worker come up from those lines; a gate-sync task sent to queue edge.<name> through Redis
is taken by that worker, which renders the gate map and reloads nginx.
"""

from __future__ import annotations

import re
import secrets
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import require
from tests.e2e import harness

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"


def unit_lines(name: str) -> list[tuple[str, str]]:
    text = (SYSTEMD / name).read_text().replace("/opt/accelerator", str(ROOT))
    out = []
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.append((key, value))
    return out


def expand(value: str, env: dict[str, str], instance: str) -> list[str]:
    """systemd's rules, as far as the units use them: %i, %H; ${VAR} is one word, a bare
    $VAR word splits on whitespace (and vanishes when empty)."""
    value = value.replace("%i", instance).replace("%H", socket.gethostname())
    words: list[str] = []
    for word in shlex.split(value):
        bare = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if bare:
            words.extend(env.get(bare.group(1), "").split())
            continue
        words.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
    return words


def unit_env(name: str, instance: str, files: list[dict[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for key, value in unit_lines(name):
        if key == "Environment":
            k, v = value.replace("%i", instance).split("=", 1)
            env[k] = v
    for f in files:  # EnvironmentFile= values override Environment= ones
        env.update(f)
    for key, value in unit_lines(name):
        if key == "UnsetEnvironment":
            for k in value.split():
                env.pop(k, None)
    return env


def commands(name: str, env: dict[str, str], instance: str, kind: str) -> list[list[str]]:
    return [expand(v, env, instance) for k, v in unit_lines(name) if k == kind]


@pytest.mark.django_db(transaction=True)
def test_edge_units_command_lines_start_a_working_edge(tmp_path, django_user_model):
    for part in ("nginx", "docker-registry"):
        require(harness.which(part) is not None, f"{part} is not installed")
    require(settings.REDIS_URL.startswith("redis://"), "needs a real Redis (scripts/test.sh)")
    import redis
    from kombu import Connection

    from accelerator.services import tenant_start
    from config.celery import app

    instance = f"unit{secrets.token_hex(3)}"
    work = harness.worker_readable_dir("deploy-units-")
    upstream = harness.start_registry(work / "upstream")
    procs: list[harness.Proc] = []
    broker = settings.REDIS_URL
    try:
        image = harness.make_image(files={"u": b"through the units"})
        harness.push_image(upstream.port, "library/accel-unit", "latest", image)
        # /etc/accelerator/common.env + control.env (the control plane) and edge.env (the
        # edge's own credentials: no secret key, no SMTP), production settings.
        common = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "DJANGO_DEBUG": "false",
            "DJANGO_ALLOWED_HOSTS": "accelerator.example.io",
            "MIRROR_DOMAIN": settings.MIRROR_DOMAIN,
            "EDGES": instance,
            "PYTHONUNBUFFERED": "1",
        }
        edge_env = {
            "DATABASE_URL": harness.database_url(),
            "REDIS_URL": broker,
            "CELERY_BROKER_URL": broker,
            "VAR_DIR": str(work / "var"),
        }
        upstream_env = {"UPSTREAM_URL": upstream.url}
        # /etc/accelerator/edge-<name>.env: ports and (here) directories.
        run = work / "run"
        per_edge = {
            "EDGE_RUN_DIR": str(run),
            "EDGE_ACCESS_LOG": str(run / "logs" / "access.log"),
            "EDGE_REGISTRY_STORAGE_DIR": str(work / "registry"),
            "EDGE_CACHE_DIR": str(work / "cache"),
            "EDGE_LISTEN": f"127.0.0.1:{harness.free_port()}",
            "EDGE_REGISTRY_LISTEN": f"127.0.0.1:{harness.free_port()}",
            "EDGE_FETCH_LISTEN": f"127.0.0.1:{harness.free_port()}",
            "EDGE_TOKEN_LISTEN": f"127.0.0.1:{harness.free_port()}",
            "EDGE_VERIFY_LISTEN": f"127.0.0.1:{harness.free_port()}",
            "EDGE_RESOLVER": "127.0.0.1",
        }

        def env_of(unit: str) -> dict[str, str]:
            files = {
                "/etc/accelerator/common.env": common,
                "/etc/accelerator/edge.env": edge_env,
                "/etc/accelerator/upstream.env": upstream_env,
                "-/etc/accelerator/edge-%i.env": per_edge,
            }
            named = [v for k, v in unit_lines(unit) if k == "EnvironmentFile"]
            assert "/etc/accelerator/control.env" not in named, f"{unit} reads control.env"
            env = unit_env(unit, instance, [files[name] for name in named])
            return {"PATH": common["PATH"], **env}

        # 1. Render (oneshot): every ExecStart line succeeds, none as root ("+").
        render = "accelerator-edge-render@.service"
        for argv in commands(render, env_of(render), instance, "ExecStart"):
            assert not argv[0].startswith(("+", "!")), f"{render} runs {argv} as root"
            done = subprocess.run(
                argv, cwd=ROOT, env=env_of(render), capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, f"{argv}\n{done.stdout}{done.stderr}"
        assert (run / "nginx.conf").exists() and (run / "internal.secret").exists()
        assert f'"edge":"{instance}"' in (run / "nginx.conf").read_text()

        # 2. The long-running units from their own lines.
        def start(unit: str) -> harness.Proc:
            env = env_of(unit)
            for argv in commands(unit, env, instance, "ExecStartPre"):
                pre = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
                assert pre.returncode == 0, f"{unit} ExecStartPre {argv}: {pre.stderr}"
            (argv,) = commands(unit, env, instance, "ExecStart")
            proc = harness.Proc.start(
                unit, ["env", "-C", str(ROOT), *argv], log=work / f"{unit}.log", env=env
            )
            procs.append(proc)
            return proc

        def port(key: str) -> int:
            return int(per_edge[key].rsplit(":", 1)[1])

        harness.wait_port(port("EDGE_REGISTRY_LISTEN"), proc=start("accelerator-registry@.service"))
        harness.wait_port(port("EDGE_TOKEN_LISTEN"), proc=start("accelerator-edge-token@.service"))
        harness.wait_port(
            port("EDGE_VERIFY_LISTEN"), proc=start("accelerator-edge-verify@.service")
        )
        nginx = start("accelerator-edge@.service")
        harness.wait_port(port("EDGE_LISTEN"), proc=nginx)
        worker = start("accelerator-edge-worker@.service")
        deadline = time.monotonic() + 60
        while "ready." not in worker.log_tail(10**6):
            assert worker.popen.poll() is None, worker.log_tail()
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.2)
        assert f"edge.{instance}" in worker.log_tail(10**6)  # its queue, and only it

        # 3. A tenant, and the gate sync sent to the edge's queue as beat sends it.
        user = django_user_model.objects.create_user(email=f"{instance}@example.com")
        tenant = tenant_start(user=user)
        host = f"{tenant.label}.{settings.MIRROR_DOMAIN}"
        edge_port = port("EDGE_LISTEN")
        assert harness.request(edge_port, "GET", "/v2/", host=host).status == 404  # unknown
        with Connection(broker) as conn:
            app.send_task(
                "edge.tasks.edge_gate_sync",
                kwargs={"edge": instance},
                queue=f"edge.{instance}",
                connection=conn,
            )
        deadline = time.monotonic() + 20
        while harness.request(edge_port, "GET", "/v2/", host=host).status != 200:
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.2)
        # Served through nginx and the registry the units started.
        resp = harness.request(edge_port, "GET", "/v2/library/accel-none/tags/list", host=host)
        assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        # A blob: nginx, the digest check and the fetch server the units started agree on the
        # secret, the cache directory and the slices (a miss, then a hit).
        layer = image.layers[0]
        blob = f"/v2/library/accel-unit/blobs/{layer.digest}"
        for cache in ("MISS", "HIT"):
            got = harness.request(edge_port, "GET", blob, host=host)
            assert got.status == 200 and harness.sha256_digest(got.body) == layer.digest
            assert got.headers["X-Edge-Cache"] == cache
    finally:
        for proc in reversed(procs):
            proc.stop(signal.SIGQUIT if "edge@" in proc.name else signal.SIGTERM, timeout=30)
        upstream.stop()
        redis.Redis.from_url(broker).delete(f"edge.{instance}")
        import shutil

        shutil.rmtree(work, ignore_errors=True)
