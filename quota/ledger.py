"""The traffic ledger: the one owner of quota arithmetic and of writes to usage and grants.

All amounts are integer bytes. Views, tasks, the API and the dashboard call this module and
never recompute its rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from quota.models import UsageBucket


@dataclass(frozen=True)
class UsageDelta:
    tenant_id: int
    edge: str
    hour: datetime  # aware UTC, truncated to the hour
    bytes: int
    requests: int
    cache_hits: int = 0


def usage_apply(*, deltas: Iterable[UsageDelta]) -> None:
    """Add a batch of per-bucket deltas in one transaction (upsert, no lost update).

    Joins the caller's transaction when there is one, so ingestion can commit its file
    position together with the usage it produced. Rows are written in key order so that two
    concurrent writers cannot deadlock.
    """
    rows = sorted(
        ((d.tenant_id, d.edge, d.hour, d.bytes, d.requests, d.cache_hits) for d in deltas),
        key=lambda r: (r[0], r[1], r[2]),
    )
    if not rows:
        return
    table = UsageBucket._meta.db_table
    sql = (
        f"INSERT INTO {table} (tenant_id, edge, hour, bytes, requests, cache_hits) "
        "VALUES (%s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (tenant_id, edge, hour) DO UPDATE SET "
        f"bytes = {table}.bytes + EXCLUDED.bytes, "
        f"requests = {table}.requests + EXCLUDED.requests, "
        f"cache_hits = {table}.cache_hits + EXCLUDED.cache_hits"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, rows)
