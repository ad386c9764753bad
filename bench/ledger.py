"""bench/ledger: the traffic ledger's read costs on PostgreSQL with generated data.

Prints:
1. month_summary() per tenant with a year (and more) of hourly buckets on two edges and
   grants spread over the history (some expired, one this month), for several history
   lengths: the time should stay flat as history grows. Next to it, what reading the same
   history from the hourly buckets alone costs (the design without the monthly rollup).
2. Dashboard-style aggregates over BENCH_LEDGER_TENANTS tenants (default 100,000): this month's
   total, top 10 tenants, tenants at >= 80 % of the base, from the monthly rollup and, for
   comparison, from the hourly buckets; and one ledger_reconcile() pass.

Environment (all optional):
  BENCH_DATABASE_URL       default postgres://postgres@127.0.0.1:5432/bench_ledger (recreated)
  BENCH_REDIS_URL          the Django cache, as in production; default
                           redis://127.0.0.1:6379/12 (flushed)
  BENCH_LEDGER_TENANTS     tenants for the aggregates (default 100000)
  BENCH_LEDGER_HOURS       hourly buckets per tenant this month for the comparison (default 8)
  BENCH_LEDGER_REPEAT      month_summary calls per history length (default 200)

The default run takes about a minute on two cores and prints the scale it used.

What keeps the summary flat: quota_usagemonth's unique (tenant, month) key (one row per month
of history), quota_usagebucket's (tenant, hour) index for this month's cut points only (the
single-column tenant indexes were dropped so the planner cannot pick them and read a tenant's
whole history), quota_grant's (tenant, created_at) index, and the cached balances at the start
of the month (see quota/month.py). The dashboard aggregates use the rollup's (month) index.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import figure, recreate_database, setup_django  # noqa: E402

DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_ledger")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
TENANTS = int(os.environ.get("BENCH_LEDGER_TENANTS", "100000"))
HOURS_NOW = int(os.environ.get("BENCH_LEDGER_HOURS", "8"))
REPEAT = int(os.environ.get("BENCH_LEDGER_REPEAT", "200"))
HISTORY_MONTHS = (1, 6, 12, 24)
EDGES = ("edge-a", "edge-b")


def _setup_django() -> None:
    setup_django(DB_URL, REDIS_URL)
    from django.core.cache import cache

    cache.clear()


def _ms(samples: list[float]) -> str:
    samples = sorted(samples)
    p50 = statistics.median(samples) * 1000
    p95 = samples[int(len(samples) * 0.95) - 1] * 1000
    return f"p50 {p50:6.2f} ms  p95 {p95:6.2f} ms"


def _p(samples: list[float], q: float) -> float:
    """The q-quantile of samples, in milliseconds."""
    samples = sorted(samples)
    return samples[max(0, int(len(samples) * q) - 1)] * 1000


def _timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _users_and_tenants(cursor, first: int, count: int, prefix: str) -> None:
    cursor.execute(
        """INSERT INTO accounts_user (password, is_superuser, email, is_staff, is_active,
                                      date_joined, language)
           SELECT '!', false, %s || g || '@bench.example', false, true, now(), ''
           FROM generate_series(%s, %s) g""",
        [prefix, first, first + count - 1],
    )
    cursor.execute(
        """INSERT INTO accelerator_tenant (user_id, label, state, suspended_reason, created_at,
                                           updated_at)
           SELECT u.id, %s || u.id, 'active', '', now(), now() FROM accounts_user u
           WHERE u.email LIKE %s""",
        [prefix, prefix + "%"],
    )


def bench_summary() -> None:
    from django.db import connection
    from django.utils import timezone

    from accelerator.models import Tenant
    from quota.grants import grant_create
    from quota.month import month_summary
    from quota.periods import HOUR, month_start

    now = timezone.now()
    current = month_start(now)
    print("\n1. month_summary() per tenant (2 edges, hourly buckets, 6 grants over the history)")
    with connection.cursor() as cursor:
        _users_and_tenants(cursor, 1, len(HISTORY_MONTHS), "hist")
    tenants = list(Tenant.objects.filter(label__startswith="hist").order_by("pk"))
    for tenant, months in zip(tenants, HISTORY_MONTHS, strict=True):
        start = current
        for _ in range(months - 1):
            start = month_start(start - HOUR)
        with connection.cursor() as cursor:
            # ~15 GB a month per tenant: every month overflows the base and draws bonus.
            cursor.execute(
                """INSERT INTO quota_usagebucket (tenant_id, edge, hour, bytes, requests,
                                                  cache_hits)
                   SELECT %s, e, h, 10000000 + (extract(epoch from h)::bigint %% 7) * 1000000,
                          10, 5
                   FROM unnest(%s::text[]) e,
                        generate_series(%s::timestamptz, date_trunc('hour', %s::timestamptz),
                                        interval '1 hour') h""",
                [tenant.pk, list(EDGES), start, now],
            )
            cursor.execute(
                """INSERT INTO quota_usagemonth (tenant_id, month, bytes)
                   SELECT tenant_id, date_trunc('month', hour)::date, sum(bytes)
                   FROM quota_usagebucket WHERE tenant_id = %s GROUP BY 1, 2""",
                [tenant.pk],
            )
        span = now - start
        for i in range(6):
            created = start + span * i / 6
            expires = None if i % 2 == 0 else created + span / 3 + HOUR
            # Some expired long ago, some still running; each made as of its own time.
            grant_create(
                tenant=tenant,
                kind="promo",
                bytes=20 * 10**9,
                source_key=f"h{tenant.pk}-{i}",
                now=created,
                expires_at=expires,
            )
        grant_create(
            tenant=tenant,
            kind="invite",
            bytes=2 * 10**9,
            source_key=f"h{tenant.pk}-now",
            now=now - HOUR,
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    for tenant, months in zip(tenants, HISTORY_MONTHS, strict=True):
        rows = tenant.usage_buckets.count()
        month_summary(tenant=tenant, now=now)  # warm
        with_rollup = _timed(lambda t=tenant: month_summary(tenant=t, now=now), REPEAT)

        def from_buckets(t=tenant):
            # What the summary would read without the rollup: every month since the first
            # grant, summed from the hourly buckets.
            with connection.cursor() as cursor:
                cursor.execute(
                    """SELECT date_trunc('month', hour), sum(bytes) FROM quota_usagebucket
                       WHERE tenant_id = %s AND hour >= (SELECT min(created_at) FROM quota_grant
                                                         WHERE tenant_id = %s)
                       GROUP BY 1""",
                    [t.pk, t.pk],
                )
                cursor.fetchall()

        without = _timed(from_buckets, max(20, REPEAT // 4))
        summary = month_summary(tenant=tenant, now=now)
        print(
            f"   {months:3d} months, {rows:6d} buckets: summary {_ms(with_rollup)}"
            f"   | history from buckets alone {_ms(without)}"
            f"   (remaining {summary.remaining} B)"
        )
        figure(
            f"month summary p95, {months} months of hourly buckets",
            _p(with_rollup, 0.95),
            "ms",
            "< 5",
            f"p50 {_p(with_rollup, 0.5):.2f} ms; {rows:,} buckets; summing the buckets alone "
            f"p50 {_p(without, 0.5):.2f} ms",
        )


def bench_aggregates() -> None:
    from django.db import connection
    from django.db.models import Sum
    from django.utils import timezone

    from quota.models import UsageMonth
    from quota.periods import month_start, next_month
    from quota.settlement import ledger_reconcile

    now = timezone.now()
    month = month_start(now)
    hours = max(1, HOURS_NOW)
    print(f"\n2. Aggregates over {TENANTS:,} tenants ({hours} hourly buckets each this month)")
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        _users_and_tenants(cursor, 1, TENANTS, "agg")
        # Bytes spread so that about 1 % of tenants are at or past 80 % of the base.
        cursor.execute(
            """INSERT INTO quota_usagebucket (tenant_id, edge, hour, bytes, requests, cache_hits)
               SELECT t.id, 'edge-a', %s::timestamptz + (h * interval '1 hour'),
                      CASE WHEN t.id %% 100 = 0 THEN 11000000000 / %s
                           ELSE (t.id %% 997) * 1000000 END, 5, 2
               FROM accelerator_tenant t, generate_series(0, %s - 1) h
               WHERE t.label LIKE 'agg%%'""",
            [month, hours, hours],
        )
        cursor.execute(
            """INSERT INTO quota_usagemonth (tenant_id, month, bytes)
               SELECT b.tenant_id, %s::date, sum(b.bytes) FROM quota_usagebucket b
               JOIN accelerator_tenant t ON t.id = b.tenant_id AND t.label LIKE 'agg%%'
               GROUP BY 1""",
            [month.date()],
        )
        cursor.execute("ANALYZE")
    print(f"   generated in {time.perf_counter() - t0:.1f} s")
    floor = 8 * 10**9

    def from_rollup():
        rows = UsageMonth.objects.filter(month=month.date())
        total = rows.aggregate(b=Sum("bytes"))["b"]
        top = list(rows.order_by("-bytes").values_list("tenant_id", "bytes")[:10])
        near = rows.filter(bytes__gte=floor).count()
        return total, top, near

    def from_buckets():
        with connection.cursor() as cursor:
            cursor.execute(
                """WITH m AS (SELECT tenant_id, sum(bytes) AS b FROM quota_usagebucket
                              WHERE hour >= %s AND hour < %s GROUP BY 1)
                   SELECT (SELECT sum(b) FROM m),
                          (SELECT array_agg(tenant_id) FROM
                              (SELECT tenant_id FROM m ORDER BY b DESC LIMIT 10) x),
                          (SELECT count(*) FROM m WHERE b >= %s)""",
                [month, next_month(month), floor],
            )
            return cursor.fetchone()

    a, b = from_rollup(), from_buckets()
    assert a[0] == b[0] and a[2] == b[2], (a, b)
    rollup, buckets = _timed(from_rollup, 20), _timed(from_buckets, 5)
    print(f"   month total, top 10, >= 80 % of base, from the rollup:  {_ms(rollup)}")
    print(f"   the same from the hourly buckets:                    {_ms(buckets)}")
    figure(
        f"dashboard aggregate over {TENANTS:,} tenants, rollup ÷ hourly buckets",
        _p(rollup, 0.5) / _p(buckets, 0.5),
        "ratio",
        note=f"p50 {_p(rollup, 0.5):.1f} ms vs {_p(buckets, 0.5):.1f} ms: month total, top 10, "
        ">= 80 % of base",
    )
    for label in ("first pass", "steady state"):
        t0 = time.perf_counter()
        result = ledger_reconcile(now=now)
        elapsed = time.perf_counter() - t0
        print(
            f"   ledger_reconcile() {label}: {elapsed * 1000:.0f} ms for {result.evaluated}"
            f" candidate tenants ({result.exhausted} exhausted) out of {TENANTS:,}"
        )


def main() -> None:
    started = time.perf_counter()
    print(
        f"bench/ledger: scale {TENANTS:,} tenants for aggregates, history "
        f"{', '.join(map(str, HISTORY_MONTHS))} months, {REPEAT} summaries each; {DB_URL}"
    )
    recreate_database(DB_URL)
    _setup_django()
    bench_summary()
    bench_aggregates()
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
