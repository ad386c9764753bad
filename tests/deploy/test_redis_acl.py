"""The edge's Redis ACL user (deploy/redis/users.acl.example), against a real redis-server of
the test's own on a loopback port: a real edge worker runs its tasks with it, and it cannot read
the control plane's queue or anything else."""

from __future__ import annotations

import secrets
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import require
from tests.e2e import harness

ROOT = Path(__file__).resolve().parents[2]
ACL = ROOT / "deploy" / "redis" / "users.acl.example"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def acl_redis(tmp_path):
    require(harness.which("redis-server") is not None, "redis-server is not installed")
    control_pw, edge_pw = secrets.token_hex(16), secrets.token_hex(16)
    rules = [
        line.replace("CHANGE-ME-CONTROL", control_pw)
        .replace("CHANGE-ME-EDGE", edge_pw)
        .replace("EDGE", "east")
        for line in ACL.read_text().splitlines()
        if line.startswith("user ")
    ]
    acl = tmp_path / "users.acl"
    acl.write_text("\n".join(rules) + "\n")
    port = harness.free_port()
    proc = harness.Proc.start(
        "redis-acl",
        [
            harness.which("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
            "--aclfile",
            str(acl),
        ],
        log=tmp_path / "redis.log",
    )
    harness.wait_port(port, proc=proc)
    try:
        yield (
            f"redis://accelerator:{control_pw}@127.0.0.1:{port}/1",
            f"redis://edge-east:{edge_pw}@127.0.0.1:{port}/1",
        )
    finally:
        proc.stop()


def test_an_edge_worker_runs_with_its_acl_user_and_reads_nothing_else(acl_redis, tmp_path):
    import redis
    from kombu import Connection

    from config.celery import app

    control_url, edge_url = acl_redis
    control = redis.Redis.from_url(control_url)
    control.lpush("celery", b"a control-plane task")
    control.set("other-data", b"x")

    run_dir = tmp_path / "run"
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "true",
        "DATABASE_URL": harness.database_url(),
        "CELERY_BROKER_URL": edge_url,
        "EDGE_NAME": "east",
        "EDGES": "east",
        "EDGE_RUN_DIR": str(run_dir),
        "VAR_DIR": str(tmp_path / "var"),
        "PYTHONUNBUFFERED": "1",
    }
    worker = harness.Proc.start(
        "edge-worker-acl",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--queues=edge.east",
            "--pool=solo",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=info",
        ],
        log=tmp_path / "worker.log",
        env=env,
    )
    try:

        def denied() -> str:  # what the ACL refused, for a failure's message
            return repr(control.acl_log())

        deadline = time.monotonic() + 60
        while "ready." not in worker.log_tail(10**6):
            assert worker.popen.poll() is None, denied() + worker.log_tail()
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.2)
        # Beat (the control plane's user) sends the edge its gate sync; the edge's worker,
        # connected as its ACL user, takes it and writes the gate map.
        with Connection(control_url) as conn:
            app.send_task(
                "edge.tasks.edge_gate_sync",
                kwargs={"edge": "east"},
                queue="edge.east",
                connection=conn,
            )
        deadline = time.monotonic() + 30
        while not (run_dir / "gate.map").exists():
            assert worker.popen.poll() is None, worker.log_tail()
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.2)
        assert "NOPERM" not in worker.log_tail(10**6), denied() + worker.log_tail()
        assert not control.acl_log(), denied()  # nothing the worker does was refused
    finally:
        worker.stop(signal.SIGTERM, timeout=30)

    edge = redis.Redis.from_url(edge_url)
    # The hand-off to the control plane (quota.tasks.usage_settle): push only.
    edge.lpush("celery", b"settle these tenants")
    assert control.llen("celery") == 2
    for attempt in (
        lambda: edge.lrange("celery", 0, -1),  # the control plane's tasks
        lambda: edge.rpop("celery"),
        lambda: edge.get("other-data"),
        lambda: edge.lpush("edge.west", b"x"),  # another edge's queue
        lambda: edge.rpop("edge.eastern"),  # a name that merely starts like its own
        lambda: edge.keys("*"),
        lambda: edge.flushall(),
        lambda: edge.config_get("*"),
        lambda: edge.acl_list(),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    assert control.get("other-data") == b"x" and control.llen("celery") == 2
    # A wrong password is no way in.
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(edge_url.replace("edge-east:", "edge-east:x")).ping()
