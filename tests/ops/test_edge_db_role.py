"""The edge's PostgreSQL role, connected as for real: it ingests and reads the gate, and
cannot read users or email addresses."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def edge_role(monkeypatch):
    assert connection.vendor == "postgresql", "needs PostgreSQL (TEST_DATABASE_URL)"
    role = f"edge_test_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(24)
    monkeypatch.setenv("EDGE_DB_PASSWORD", password)
    call_command("edge_db_role", role)
    yield role, password
    with connection.cursor() as cursor:
        cursor.execute(f"DROP OWNED BY {role}")
        cursor.execute(f"DROP ROLE {role}")


def _url(role: str, password: str) -> str:
    s = connection.settings_dict
    return (
        f"postgres://{role}:{password}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    )


def test_the_edge_role_ingests_and_cannot_read_users(edge_role, tmp_path, django_user_model):
    from accelerator.services import tenant_start

    role, password = edge_role
    user = django_user_model.objects.create_user(email="secret@example.com", password="x" * 12)
    tenant = tenant_start(user=user)
    log = tmp_path / "access.log"
    line = (
        '{"ts":%d.000,"edge":"east","tenant":"%s","host":"h","method":"GET","uri":"/v2/",'
        '"status":200,"bytes_sent":300,"body_bytes_sent":1234,"completion":"OK",'
        '"request_time":0.001,"request_id":"%s","cache":""}\n'
    )
    log.write_text(line % (int(time.time()), tenant.label, secrets.token_hex(16)))
    (tmp_path / "var" / "celery" / "queue").mkdir(parents=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": _url(role, password),
        "ACCELERATOR_ROLE": "edge",
        "DJANGO_DEBUG": "true",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "VAR_DIR": str(tmp_path / "var"),
        "EDGE_NAME": "east",
        "EDGE_ACCESS_LOG": str(log),
        "EDGE_RUN_DIR": str(tmp_path / "run"),
        "CELERY_BROKER_URL": "filesystem://",
    }
    code = (
        "import django; django.setup();"
        "from ingest.services import ingest_edge;"
        "from accelerator.gate import gate_table;"
        f"r = ingest_edge(edge='east', path={str(log)!r});"
        f"print(r.lines, gate_table()[{tenant.label!r}])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "active"]
    from quota.models import UsageBucket

    assert sum(UsageBucket.objects.filter(tenant=tenant).values_list("bytes", flat=True)) == 1234
    # Enforcement was handed to the control plane's queue, not attempted with the edge's role.
    queued = [f.read_bytes() for f in (tmp_path / "var" / "celery" / "queue").iterdir()]
    assert any(b"quota.tasks.usage_settle" in m for m in queued)
    # As that role: no users, no email addresses, no sessions, no tokens.
    with psycopg.connect(_url(role, password), autocommit=True) as conn:
        for table in ("accounts_user", "account_emailaddress", "django_session"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT * FROM {table} LIMIT 1")
        # Of a user, only what the gate joins: the id and whether the account is active.
        for column in ("email", "password", "email_canonical"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT {column} FROM accounts_user LIMIT 1")
        conn.execute("SELECT id, is_active FROM accounts_user LIMIT 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE accelerator_tenant SET state = 'active'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM quota_grant")


@pytest.mark.parametrize(
    "role, password, message",
    [
        ("bad role; drop table x", "p" * 20, "role name"),
        ("Robert'); --", "p" * 20, "role name"),
        ("x" * 64, "p" * 20, "role name"),
        ("edge_ok", "short", "password"),
        ("edge_ok", "", "password"),
    ],
)
def test_bad_role_names_and_passwords_are_refused(role, password, message, monkeypatch):
    monkeypatch.setenv("EDGE_DB_PASSWORD", password)
    with pytest.raises(CommandError, match=message):
        call_command("edge_db_role", role)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'edge_ok'")
        assert cursor.fetchone()[0] == 0
