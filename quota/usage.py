"""Usage writes: the hourly buckets and their monthly rollup, always in one transaction.

Writers must go through usage_apply or usage_apply_hourly (never UsageBucket.objects.create /
bulk_create), or the rollup (UsageMonth, one row per tenant and month, which the month rule
reads) drifts; ``manage.py ledger_rollup_rebuild`` recomputes it from the buckets.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.db import connection, transaction

from accelerator.sql import day_epoch, numbers_joined
from config.upstreams import DOCKER_HUB
from quota.models import UsageBucket, UsageMonth
from quota.periods import month_start


@dataclass(frozen=True)
class UsageDelta:
    tenant_id: int
    edge: str
    hour: datetime  # aware UTC, truncated to the hour
    bytes: int
    requests: int
    cache_hits: int = 0
    registry: str = DOCKER_HUB  # the registry the edge routed to (UPSTREAMS' names)


def usage_apply(*, deltas: Iterable[UsageDelta]) -> None:
    """Add a batch of per-bucket deltas in one transaction (upsert, no lost update).

    Joins the caller's transaction when there is one, so ingestion can commit its file
    position together with the usage it produced. Rows are written in key order (buckets,
    then monthly rollups) so that two concurrent writers cannot deadlock. The monthly rollup
    (UsageMonth) is updated in the same transaction: the two tables always agree.
    """
    # One row per key: an upsert statement may not touch the same row twice.
    buckets: dict[tuple[int, str, int, str], list[int]] = {}
    for d in deltas:
        key = (d.tenant_id, d.edge, int(d.hour.timestamp()), d.registry)
        total = buckets.setdefault(key, [0, 0, 0])
        total[0] += d.bytes
        total[1] += d.requests
        total[2] += d.cache_hits
    _apply_rows([(*key, *buckets[key]) for key in sorted(buckets)])


def usage_apply_hourly(
    *, edge: str, buckets: Mapping[tuple[int, float, str], Sequence[int]]
) -> None:
    """usage_apply for one edge's buckets as ingestion aggregates them: (tenant id, hour index
    = epoch // 3600, registry) -> (bytes, requests, cache hits). The same writes, without a
    UsageDelta and a datetime per bucket (a catch-up batch has tens of thousands)."""
    rows = sorted(
        (tenant_id, edge, int(hour * _HOUR), registry, acc[0], acc[1], acc[2])
        for (tenant_id, hour, registry), acc in buckets.items()
    )
    _apply_rows(rows)


_HOUR = 3600


def _apply_rows(rows: list[tuple[int, str, int, str, int, int, int]]) -> None:
    """Rows (tenant, edge, hour as epoch seconds, registry, bytes, requests, hits), one per
    key and in key order, with their monthly rollups."""
    if not rows:
        return
    months: dict[tuple[int, date], int] = defaultdict(int)
    month_of: dict[int, date] = {}  # a batch has a few hours: one month_start per hour
    for tenant_id, _edge, hour, _registry, nbytes, _requests, _hits in rows:
        month = month_of.get(hour)
        if month is None:
            month = month_of[hour] = month_start(datetime.fromtimestamp(hour, tz=UTC)).date()
        months[(tenant_id, month)] += nbytes
    month_rows = sorted(months.items())
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _upsert_set_based(cursor, rows, month_rows)
        else:
            _upsert_row_by_row(cursor, rows, month_rows)


_BUCKET_UPDATE = (
    "ON CONFLICT (tenant_id, edge, hour, registry) DO UPDATE SET "
    "bytes = {t}.bytes + EXCLUDED.bytes, "
    "requests = {t}.requests + EXCLUDED.requests, "
    "cache_hits = {t}.cache_hits + EXCLUDED.cache_hits"
)
_MONTH_UPDATE = "ON CONFLICT (tenant_id, month) DO UPDATE SET bytes = {t}.bytes + EXCLUDED.bytes"


def _upsert_set_based(cursor, rows, month_rows) -> None:
    """PostgreSQL: one statement per table over arrays (unnest), whatever the batch size.

    A batch of tens of thousands of buckets costs one round trip instead of one per row, which
    is what keeps ingestion above its lines-per-second target (bench/ingest.py). Numbers go as
    comma-separated text that PostgreSQL splits (string_to_array): the driver's array
    adaptation quotes element by element in Python and cost more than the upsert itself. Hours
    go as epoch seconds; edges and registries, a handful per batch, as indexes into small arrays.
    """
    table = UsageBucket._meta.db_table
    mtable = UsageMonth._meta.db_table
    edges = sorted({row[1] for row in rows})
    edge_index = {edge: i + 1 for i, edge in enumerate(edges)}  # SQL arrays count from 1
    registries = sorted({row[3] for row in rows})
    registry_index = {name: i + 1 for i, name in enumerate(registries)}
    tenants, edge_ids, hours, registry_ids, nbytes, requests, hits = zip(*rows, strict=True)
    cursor.execute(
        f"INSERT INTO {table} (tenant_id, edge, hour, registry, bytes, requests, cache_hits) "
        "SELECT t, (%s::text[])[e], to_timestamp(h), (%s::text[])[g], b, r, c FROM unnest("
        + ", ".join(["string_to_array(%s, ',')::bigint[]"] * 7)
        + ") AS u(t, e, h, g, b, r, c) "
        + _BUCKET_UPDATE.format(t=table),
        [
            edges,
            registries,
            numbers_joined(tenants),
            numbers_joined(edge_index[e] for e in edge_ids),
            numbers_joined(hours),
            numbers_joined(registry_index[g] for g in registry_ids),
            numbers_joined(nbytes),
            numbers_joined(requests),
            numbers_joined(hits),
        ],
    )
    epochs = {m: day_epoch(m) for m in {m for (_t, m), _b in month_rows}}  # a month or two
    cursor.execute(
        f"INSERT INTO {mtable} (tenant_id, month, bytes) "
        "SELECT t, (to_timestamp(m) AT TIME ZONE 'UTC')::date, b FROM unnest("
        "string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::bigint[], "
        "string_to_array(%s, ',')::bigint[]) AS u(t, m, b) " + _MONTH_UPDATE.format(t=mtable),
        [
            numbers_joined(t for (t, _m), _b in month_rows),
            numbers_joined(epochs[m] for (_t, m), _b in month_rows),
            numbers_joined(b for _key, b in month_rows),
        ],
    )


def _upsert_row_by_row(cursor, rows, month_rows) -> None:
    """Other databases (SQLite for `make run`): the same upsert, one row at a time."""
    table = UsageBucket._meta.db_table
    mtable = UsageMonth._meta.db_table
    # Adapted as the ORM does, so raw rows compare equal to ORM lookups (SQLite stores
    # datetimes as text).
    adapt_dt = connection.ops.adapt_datetimefield_value
    adapt_d = connection.ops.adapt_datefield_value
    cursor.executemany(
        f"INSERT INTO {table} (tenant_id, edge, hour, registry, bytes, requests, cache_hits) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) " + _BUCKET_UPDATE.format(t=table),
        [
            (t, e, adapt_dt(datetime.fromtimestamp(h, tz=UTC)), g, b, r, c)
            for t, e, h, g, b, r, c in rows
        ],
    )
    cursor.executemany(
        f"INSERT INTO {mtable} (tenant_id, month, bytes) VALUES (%s, %s, %s) "
        + _MONTH_UPDATE.format(t=mtable),
        [(t, adapt_d(m), b) for (t, m), b in month_rows],
    )


def usage_rollup_rebuild(*, tenant_ids: Sequence[int] | None = None) -> int:
    """Recompute UsageMonth from UsageBucket (operators: after restoring buckets by hand).

    Returns the number of rollup rows written. Takes a table lock on the rollup so that
    usage_apply waits instead of interleaving.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    f"LOCK TABLE {UsageMonth._meta.db_table} IN SHARE ROW EXCLUSIVE MODE"
                )
        buckets = UsageBucket.objects.all()
        months = UsageMonth.objects.all()
        if tenant_ids is not None:
            buckets = buckets.filter(tenant_id__in=tenant_ids)
            months = months.filter(tenant_id__in=tenant_ids)
        totals: dict[tuple[int, date], int] = defaultdict(int)
        for tenant_id, hour, nbytes in buckets.values_list("tenant_id", "hour", "bytes").iterator(
            chunk_size=10_000
        ):
            totals[(tenant_id, month_start(hour).date())] += nbytes
        months.delete()
        UsageMonth.objects.bulk_create(
            [UsageMonth(tenant_id=t, month=m, bytes=b) for (t, m), b in totals.items()],
            batch_size=5_000,
        )
    return len(totals)
