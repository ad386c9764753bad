"""/readyz of a real gunicorn fails while its database is unreachable, naming the database,
and recovers when it is back. The shared PostgreSQL is never touched: gunicorn reaches it
through a TCP proxy this test stops and starts again."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from tests.e2e import harness
from tests.ops.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]


def readyz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(port: int, status: int, *, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, body = readyz(port)
        if code == status:
            return body
        assert time.monotonic() < deadline, (code, body)
        time.sleep(0.3)


@pytest.mark.django_db
def test_readyz_fails_without_the_database_and_recovers(tmp_path):
    s = connection.settings_dict
    proxy = TcpProxy((s["HOST"] or "127.0.0.1", int(s["PORT"] or 5432))).start()
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    port = harness.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{auth}@127.0.0.1:{proxy.port}/{s['NAME']}",
        "VAR_DIR": str(tmp_path / "var"),
        "CELERY_BROKER_URL": "memory://",
        "DJANGO_DEBUG": "true",
    }
    web = harness.Proc.start(
        "gunicorn",
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1"],
        log=tmp_path / "gunicorn.log",
        env=env,
    )
    try:
        harness.wait_port(port, proc=web, timeout=30)
        assert wait_for(port, 200)["failed"] == []
        proxy.stop()
        body = wait_for(port, 503)
        assert body["failed"] == ["database"], body
        assert body["checks"]["cache"] == "ok"
        proxy.start()  # the same port again
        assert wait_for(port, 200)["checks"]["database"] == "ok"
    finally:
        web.stop()
        proxy.stop()
