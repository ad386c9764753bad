"""bench/web: p50/p95 of the console, the API and the staff dashboard under 50 concurrent clients.

Runs gunicorn with deploy/gunicorn.conf.py (production settings, DJANGO_DEBUG=false) against
PostgreSQL filled with generated data: BENCH_SCALE=1 is 100,000 users and a year of hourly usage
for 10,000 of them (about 4.4 million usage buckets), generated with set-based SQL in a minute
or two and reused by later runs at the same scale.

Environment (all optional):
  BENCH_SCALE=1.0          fraction of the full data set (0.01 for a quick run)
  BENCH_DATABASE_URL       default postgres://postgres@127.0.0.1:5432/bench_web (created)
  BENCH_REDIS_URL          default redis://127.0.0.1:6379/12 (flushed)
  BENCH_CLIENTS=50         concurrent clients (one keep-alive connection each)
  BENCH_SECONDS=15         measured seconds per target, after 3 s of warm-up
  BENCH_THINK_MS=1000      mean pause of each client between requests (uniform 0.5-1.5x), like
                           a person or a polling script; 0 = closed loop, which measures
                           saturation (throughput), not latency
  BENCH_REGENERATE=0       1 = drop and regenerate the data even at the same scale

Each client is a different user (its own session cookie, or its own API token), as in real
use, so throttles and per-user queries behave as they would. The load generator runs on the
same machine as the server and takes CPU from it: figures are pessimistic.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import figure  # noqa: E402

SCALE = float(os.environ.get("BENCH_SCALE", "1.0"))
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_web")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "50"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "15"))
THINK = float(os.environ.get("BENCH_THINK_MS", "1000")) / 1000
REGENERATE = os.environ.get("BENCH_REGENERATE", "0") == "1"
WARMUP = 3.0

USERS = max(int(100_000 * SCALE), CLIENTS + 1)
ACTIVE = max(int(10_000 * SCALE), CLIENTS)
SECRET = "bench-" + "k" * 60

SERVER_ENV = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": SECRET,
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    "DJANGO_SECURE_SSL_REDIRECT": "false",
    "DJANGO_HSTS_SECONDS": "0",
    "DATABASE_URL": DB_URL,
    "REDIS_URL": REDIS_URL,
    "CELERY_BROKER_URL": REDIS_URL,
    "MIRROR_DOMAIN": "m.localhost",
    "EMAIL_HOST": "localhost",
    "DEFAULT_FROM_EMAIL": "bench@localhost",
    "SITE_URL": "https://localhost",
}


def _ensure_database() -> None:
    import psycopg

    url = urlparse(DB_URL)
    name = url.path.lstrip("/")
    admin = url._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def _setup_django() -> None:
    os.environ.update(SERVER_ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


# --- data -----------------------------------------------------------------------------------
GENERATE_SQL = [
    "SET TIME ZONE 'UTC'",
    # Bulk load without per-row foreign-key triggers; the data is consistent by construction.
    "SET session_replication_role = replica",
    """TRUNCATE accounts_user, accelerator_tenant, accelerator_retiredlabel, quota_grant,
       quota_usagebucket, quota_usagemonth, account_emailaddress, django_session,
       dashboard_staffaction, api_personalaccesstoken RESTART IDENTITY CASCADE""",
    """INSERT INTO accounts_user (password, last_login, is_superuser, email, is_staff, is_active,
                                  date_joined, invite_code, language)
       SELECT %(pw)s, NULL, false, 'user' || g || '@bench.example', false, true,
              now() - (%(users)s - g) * interval '6 minutes', NULL, ''
       FROM generate_series(1, %(users)s) g""",
    """INSERT INTO account_emailaddress (user_id, email, verified, "primary")
       SELECT id, email, true, true FROM accounts_user""",
    # Labels in the label alphabet (base32 lowercase): hex with 0, 1, 8, 9 mapped to w-z.
    """INSERT INTO accelerator_tenant (user_id, label, state, suspended_reason, exhausted_at,
                                       created_at, updated_at)
       SELECT id, translate(substr(md5(id::text || 'bench'), 1, 12), '0189', 'wxyz'),
              'active', '', NULL, date_joined, now()
       FROM accounts_user ORDER BY id LIMIT %(active)s""",
    # A year of usage: each tenant has a weight (few heavy, many light); on 60 % of the days
    # it pulls in a morning hour and, independently, in an afternoon hour.
    """INSERT INTO quota_usagebucket (tenant_id, edge, hour, bytes, requests, cache_hits)
       SELECT tenant_id, edge, hour, bytes, requests, (requests * random())::bigint
       FROM (
         SELECT t.id AS tenant_id,
                CASE WHEN t.id %% 3 = 0 THEN 'edge-2' ELSE 'edge-1' END AS edge,
                d.day + make_interval(hours => half.base + floor(random() * 12)::int) AS hour,
                1 + (t.w * random() * 1.0e9)::bigint AS bytes,
                1 + (random() * 200)::bigint AS requests
         FROM (SELECT id, power(random(), 6) AS w FROM accelerator_tenant) t
         CROSS JOIN generate_series(date_trunc('day', now()) - interval '364 days',
                                    date_trunc('day', now()), interval '1 day') AS d(day)
         CROSS JOIN (VALUES (0), (12)) AS half(base)
         WHERE random() < 0.6
       ) rows
       WHERE hour <= now()""",
    """INSERT INTO quota_usagemonth (tenant_id, month, bytes)
       SELECT tenant_id, date_trunc('month', hour)::date, sum(bytes)
       FROM quota_usagebucket GROUP BY 1, 2""",
    """INSERT INTO quota_grant (tenant_id, kind, bytes, source_key, created_at, expires_at, note,
                                created_by_id)
       SELECT id, 'invite', 2000000000, 'bench-invite:' || id, now() - interval '200 days',
              NULL, '', NULL
       FROM accelerator_tenant WHERE id %% 10 = 0""",
    # Exhausted: this month's usage above the base, for tenants without a bonus.
    """UPDATE accelerator_tenant t SET exhausted_at = now()
       FROM quota_usagemonth m
       WHERE m.tenant_id = t.id AND m.month = date_trunc('month', now())::date
         AND m.bytes >= %(base)s AND t.id %% 10 <> 0""",
    "SET session_replication_role = origin",
]


def _data_present() -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_meta (users int, active int)")
        cursor.execute("SELECT users, active FROM bench_meta")
        row = cursor.fetchone()
    return row == (USERS, ACTIVE)


def generate() -> float:
    from django.conf import settings
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction

    started = time.monotonic()
    params = {
        "pw": make_password("bench-password"),
        "users": USERS,
        "active": ACTIVE,
        "base": settings.QUOTA_MONTHLY_BYTES,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        for sql in GENERATE_SQL:
            cursor.execute(sql, params)
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_meta (users int, active int)")
        cursor.execute("DELETE FROM bench_meta")
        cursor.execute("INSERT INTO bench_meta VALUES (%s, %s)", [USERS, ACTIVE])
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return time.monotonic() - started


def _counts() -> dict[str, int]:
    from django.db import connection

    out = {}
    with connection.cursor() as cursor:
        for table in ["accounts_user", "accelerator_tenant", "quota_usagebucket", "quota_grant"]:
            cursor.execute(f"SELECT count(*) FROM {table}")
            out[table] = cursor.fetchone()[0]
    return out


def clients() -> tuple[list[str], list[str], str]:
    """Session cookies and API tokens for CLIENTS users with tenants, and a staff session."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils import timezone

    from accelerator.models import Tenant
    from accounts.models import User
    from api.models import PersonalAccessToken
    from api.services import token_create

    def session_for(user) -> str:
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        return store.session_key

    # Spread over the data set: light and heavy users alike.
    step = max(ACTIVE // CLIENTS, 1)
    tenants = list(Tenant.objects.select_related("user").order_by("id")[::step][:CLIENTS])
    sessions = [session_for(t.user) for t in tenants]
    expires = timezone.now() + timedelta(days=1)
    # Earlier runs' tokens are retired, so reruns never reach the live-token limit.
    PersonalAccessToken.objects.filter(name="bench", revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    tokens = [
        token_create(scopes=("read", "write"), user=t.user, name="bench", expires_at=expires).secret
        for t in tenants
    ]
    staff, _ = User.objects.get_or_create(email="staff@bench.example", defaults={"is_staff": True})
    return sessions, tokens, session_for(staff)


# --- server ---------------------------------------------------------------------------------
def start_server() -> tuple[subprocess.Popen, int, socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    port = sock.getsockname()[1]
    env = {**os.environ, **SERVER_ENV}
    proc = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "gunicorn"),
            "-c",
            str(ROOT / "deploy" / "gunicorn.conf.py"),
            "--bind",
            f"fd://{sock.fileno()}",
            "config.wsgi",
        ],
        cwd=ROOT,
        env=env,
        pass_fds=[sock.fileno()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            status, _ = asyncio.run(_one(port, "/api/schema/", {}))
            if status == 200:
                return proc, port, sock
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode()[-3000:])
        time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError("gunicorn did not answer within 30 s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=25)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- load -----------------------------------------------------------------------------------
async def _request(reader, writer, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    writer.write((head + "\r\n").encode())
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split()[1])
    length, chunked, close = None, False, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and value == "close":
            close = True
    if chunked:
        body = b""
        while True:
            size = int((await reader.readline()).strip(), 16)
            if size == 0:
                await reader.readline()
                break
            body += await reader.readexactly(size + 2)
    else:
        body = await reader.readexactly(length or 0)
    if close:
        raise ConnectionResetError("server closed the connection")
    return status, body


async def _one(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await _request(reader, writer, path, headers)
    finally:
        writer.close()


async def _client(port, plan, stop_at, measure_from, samples, errors):
    """plan: list of (name, path, headers), cycled."""
    conn = None
    # Clients start at random moments and pause a random 0.5-1.5 think times, as independent
    # users do; in lockstep they would all ask for the same page at the same instant.
    rng = random.Random(id(plan))
    i = rng.randrange(len(plan))
    if THINK:
        await asyncio.sleep(rng.uniform(0, THINK))
    while time.monotonic() < stop_at:
        name, path, headers = plan[i % len(plan)]
        i += 1
        try:
            if conn is None:
                conn = await asyncio.open_connection("127.0.0.1", port)
            t0 = time.monotonic()
            status, _ = await _request(*conn, path, headers)
            elapsed = time.monotonic() - t0
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            if conn is not None:
                conn[1].close()
            conn = None  # gunicorn's max_requests recycles workers: reconnect
            continue
        if t0 >= measure_from:
            samples.setdefault(name, []).append(elapsed)
            if status != 200:
                errors[f"{name} {status}"] = errors.get(f"{name} {status}", 0) + 1
        if THINK:
            await asyncio.sleep(THINK * rng.uniform(0.5, 1.5))
    if conn is not None:
        conn[1].close()


async def _run(port: int, plans: list[list[tuple[str, str, dict]]]):
    samples: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    start = time.monotonic()
    measure_from, stop_at = start + WARMUP, start + WARMUP + SECONDS
    await asyncio.gather(
        *(_client(port, plan, stop_at, measure_from, samples, errors) for plan in plans)
    )
    return samples, errors


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000


def report(target: str, samples: dict[str, list[float]], errors: dict[str, int], limit: float):
    everything = [v for vs in samples.values() for v in vs]
    if not everything:
        print(f"{target}: no samples")
        return False
    p95 = _pct(everything, 95)
    ok = p95 < limit and not errors
    print(
        f"{target:<10} n={len(everything):>6}  {len(everything) / SECONDS:7.1f} req/s  "
        f"p50={_pct(everything, 50):6.1f} ms  p95={p95:6.1f} ms  p99={_pct(everything, 99):6.1f} ms"
        f"  mean={statistics.fmean(everything) * 1000:6.1f} ms  target p95<{limit:.0f} ms "
        f"{'OK' if ok else 'MISSED'}"
    )
    for name, values in sorted(samples.items()):
        print(
            f"    {name:<22} n={len(values):>6}  p50={_pct(values, 50):6.1f} ms  "
            f"p95={_pct(values, 95):6.1f} ms"
        )
    for key, count in sorted(errors.items()):
        print(f"    non-200: {key} x{count}")
    note = f"scale {SCALE}, {CLIENTS} clients, think {THINK * 1000:.0f} ms"
    _figure(f"{target} p50", _pct(everything, 50), "ms", "", note)
    _figure(f"{target} p95", p95, "ms", f"< {limit:.0f}", note)
    _figure(f"{target} throughput", len(everything) / SECONDS, "req/s", "", note)
    return ok


def _figure(name: str, value: float, unit: str, target: str, note: str) -> None:
    figure(name, value, unit, target, note, digits=1)


def main() -> int:
    _ensure_database()
    _setup_django()
    from django.core.management import call_command

    print(
        f"bench/web: scale {SCALE} = {USERS:,} users, {ACTIVE:,} with a year of usage; "
        f"{CLIENTS} clients, {SECONDS:.0f} s per target, think time {THINK * 1000:.0f} ms"
    )
    call_command("migrate", verbosity=0)
    if REGENERATE or not _data_present():
        print(f"generating data ... done in {generate():.1f} s")
    else:
        print("reusing the data generated earlier at this scale")
    print("rows: " + ", ".join(f"{k}={v:,}" for k, v in _counts().items()))
    print(f"load average before the run: {os.getloadavg()}")
    sessions, tokens, staff_session = clients()

    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    proc, port, sock = start_server()
    results = []
    try:
        workers = os.environ.get("WEB_CONCURRENCY", f"{os.cpu_count() * 2 + 1} (default)")
        print(f"gunicorn on 127.0.0.1:{port}, deploy/gunicorn.conf.py, workers={workers}")
        today = datetime.now(UTC).date()
        month_ago = (today - timedelta(days=29)).isoformat()
        week_ago = (today - timedelta(days=6)).isoformat()

        # The dashboard's first view after a cold cache, then the refresh command's timing.
        t0 = time.monotonic()
        status, _ = asyncio.run(_one(port, "/staff/", {"Cookie": f"sessionid={staff_session}"}))
        print(
            f"dashboard cold (cache empty, figures computed in the request): "
            f"{(time.monotonic() - t0) * 1000:.0f} ms, status {status}"
        )

        console = [
            [("console /console/", "/console/", {"Cookie": f"sessionid={s}"})] for s in sessions
        ]
        api = [
            [
                ("api quota", "/api/v1/quota/", {"Authorization": f"Bearer {t}"}),
                ("api me", "/api/v1/me/", {"Authorization": f"Bearer {t}"}),
                (
                    "api usage 30d daily",
                    f"/api/v1/usage/?start={month_ago}&end={today}",
                    {"Authorization": f"Bearer {t}"},
                ),
                (
                    "api usage 7d hourly",
                    f"/api/v1/usage/?start={week_ago}&end={today}&granularity=hour",
                    {"Authorization": f"Bearer {t}"},
                ),
            ]
            for t in tokens
        ]
        dashboard = [
            [("dashboard /staff/", "/staff/", {"Cookie": f"sessionid={staff_session}"})]
            for _ in range(CLIENTS)
        ]
        for target, plans, limit in [
            ("console", console, 100),
            ("api", api, 100),
            ("dashboard", dashboard, 300),
        ]:
            samples, errors = asyncio.run(_run(port, plans))
            results.append(report(target, samples, errors, limit))
    finally:
        stop_server(proc)
        sock.close()
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
