"""Writes of TenantActivity: what the edge saw of each tenant, folded in per ingestion write.

Invariants:
- activity_record joins the caller's transaction. Ingestion calls it with committed batches
  only (once per run, every few seconds of a catch-up), so a batch is never counted twice; a
  crash before the write loses a few seconds of status, never a charged byte. Rows are locked
  in tenant order, so two edges' workers take turns without deadlock.
- First seen only moves back, last seen only forward; the client is the one of the latest
  request; pulls fold by accelerator.clients' rule and keep the 20 latest.
- A refusal the user should hear about (exhausted, suspended, rotated address) queues at most
  one email a day (accelerator.tasks), after commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import msgspec
from django.db import connection, transaction
from django.utils import timezone

from accelerator.clients import (
    AGENT_MAX,
    ClientInfo,
    Pull,
    Refusal,
    client_from_agent,
    pulls_merge,
    refusal_reason,
)
from accelerator.models import Tenant, TenantActivity
from accelerator.sql import ids_in, numbers_joined
from accelerator.tasks import refusal_notices_send

# Refusals that mean "your pulls bypass the accelerator until you act" (a rate limit passes).
NOTIFIED_REFUSALS = (Refusal.EXHAUSTED, Refusal.SUSPENDED, Refusal.ROTATED)
# An old log replayed long after the fact sends no email.
_NOTIFY_FRESH = timedelta(minutes=10)


@dataclass
class ActivityDelta:
    """One label's part of a batch (ingest builds these from parser.Seen)."""

    tenant_id: int
    retired: bool  # the label was rotated away
    first: float
    last: float
    agent: str = ""
    pulls: list[Pull] = field(default_factory=list)
    refusals: dict[int, tuple[float, str]] = field(default_factory=dict)  # status -> (ts, uri)


def _printable(text: str, limit: int) -> str:
    """The log is not trusted: control and format characters (NUL, which PostgreSQL refuses;
    bidi overrides) are dropped before anything is stored or shown."""
    text = text[: limit * 2]
    if text.isprintable():  # nearly always: one C call instead of one per character
        return text[:limit]
    return "".join(c for c in text if c.isprintable())[:limit]


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def activity_record(*, deltas: Iterable[ActivityDelta], now: datetime | None = None) -> list[int]:
    """Fold a batch's deltas into the tenants' activity rows (caller's transaction). Returns the
    ids of tenants whose new refusal may deserve an email (queued after commit).

    A catch-up batch touches thousands of tenants: rows are read as tuples (no model instance
    each) and written back in one statement, so the cost is the fold itself."""
    deltas = sorted(deltas, key=lambda d: (d.tenant_id, d.last))
    if not deltas:
        return []
    now = now or timezone.now()
    ids = sorted({d.tenant_id for d in deltas})
    with transaction.atomic():
        _create_missing({d.tenant_id: d.first for d in reversed(deltas)})
        rows = {values[0]: _Row(values) for values in _rows_locked(ids)}
        exhausted = dict(
            Tenant.objects.filter(pk__in=ids_in(ids)).values_list("pk", "exhausted_at")
        )
        notify: list[int] = []
        for d in deltas:
            row = rows.get(d.tenant_id)
            if row is None:  # the tenant was deleted meanwhile
                continue
            if _fold(row, d, exhausted.get(d.tenant_id)) and now - row.last_refusal_at < (
                _NOTIFY_FRESH
            ):
                notify.append(d.tenant_id)
        _write(list(rows.values()))
    notify = sorted(set(notify))
    if notify:
        # One message per batch, queued once the batch is committed.
        transaction.on_commit(lambda: refusal_notices_send.delay(notify))
    return notify


_FIELDS = [
    ("first_seen_at", "timestamptz"),
    ("last_seen_at", "timestamptz"),
    ("user_agent", "text"),
    ("client", "text"),
    ("client_version", "text"),
    ("client_cli_version", "text"),
    ("last_pull_at", "timestamptz"),
    ("recent_pulls", "jsonb"),
    ("last_refusal_reason", "text"),
    ("last_refusal_at", "timestamptz"),
    ("last_refusal_path", "text"),
]
_COLUMNS = ("tenant_id", *(name for name, _ in _FIELDS))


def _rows_locked(ids: list[int]) -> Iterable[Sequence]:
    """The tenants' activity rows as values of _COLUMNS, locked in tenant order. PostgreSQL:
    the rows travel as one JSON document, timestamps as epoch seconds, and become datetimes
    here (the driver loads value by value in Python: 10,000 rows of twelve cost more than the
    query); the same instants to the microsecond (a float8 of today's epoch resolves a
    quarter of one)."""
    if connection.vendor != "postgresql":
        return (
            TenantActivity.objects.select_for_update()
            .filter(tenant_id__in=ids_in(ids))
            .order_by("tenant_id")
            .values_list(*_COLUMNS)
        )
    columns = ", ".join(
        (f"extract(epoch from {name})::float8" if kind == "timestamptz" else name) + f" AS c{i}"
        for i, (name, kind) in enumerate(_FIELDS, start=1)
    )
    values = ", ".join(f"c{i}" for i in range(1, len(_FIELDS) + 1))
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH locked AS (SELECT tenant_id, {columns} FROM {TenantActivity._meta.db_table} "
            "WHERE tenant_id = ANY(string_to_array(%s, ',')::bigint[]) "
            "ORDER BY tenant_id FOR UPDATE) "
            f"SELECT coalesce(json_agg(json_build_array(tenant_id, {values}) ORDER BY tenant_id), "
            "'[]')::text FROM locked",
            [numbers_joined(ids)],
        )
        (document,) = cursor.fetchone()
    rows = msgspec.json.decode(document)  # as text: the driver's own JSON loads cost more
    times = [i for i, (_name, kind) in enumerate(_FIELDS, start=1) if kind == "timestamptz"]
    for row in rows:
        for i in times:
            if row[i] is not None:
                row[i] = _at(row[i])
    return rows


class _Row:
    """One activity row's columns, as _fold reads and writes them."""

    __slots__ = _COLUMNS

    def __init__(self, values: tuple) -> None:
        for name, value in zip(_COLUMNS, values, strict=True):
            setattr(self, name, value)


def _create_missing(first_by_tenant: dict[int, float]) -> None:
    """A row for each tenant seen for the first time (first and last seen: its first request)."""
    if connection.vendor != "postgresql":
        TenantActivity.objects.bulk_create(
            [
                TenantActivity(tenant_id=t, first_seen_at=_at(ts), last_seen_at=_at(ts))
                for t, ts in first_by_tenant.items()
            ],
            ignore_conflicts=True,
        )
        return
    table = TenantActivity._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (tenant_id, first_seen_at, last_seen_at, user_agent, client, "
            "client_version, client_cli_version, recent_pulls, last_refusal_reason, "
            "last_refusal_path) SELECT (e->>0)::bigint, to_timestamp((e->>1)::float8), "
            "to_timestamp((e->>1)::float8), '', '', '', '', '[]'::jsonb, '', '' "
            "FROM jsonb_array_elements(%s::jsonb) AS e ON CONFLICT (tenant_id) DO NOTHING",
            [_json(sorted(first_by_tenant.items()))],
        )


def _write(rows: list[_Row]) -> None:
    """Write the folded rows back. PostgreSQL: one UPDATE over one JSON parameter, whatever the
    number of tenants (Django's bulk_update builds a CASE per row and field, and the driver
    quotes arrays element by element in Python: both took seconds for 10,000 tenants)."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        TenantActivity.objects.bulk_update(
            [TenantActivity(**{name: getattr(r, name) for name in _COLUMNS}) for r in rows],
            [name for name, _ in _FIELDS],
            batch_size=500,
        )
        return
    payload = _json(
        [
            [r.tenant_id]
            + [
                (None if v is None else v.timestamp()) if kind == "timestamptz" else v
                for v, kind in ((getattr(r, name), kind) for name, kind in _FIELDS)
            ]
            for r in rows
        ]
    )
    sets = ", ".join(
        f"{name} = to_timestamp((e->>{i})::float8)"
        if kind == "timestamptz"
        else (f"{name} = e->{i}" if kind == "jsonb" else f"{name} = e->>{i}")
        for i, (name, kind) in enumerate(_FIELDS, start=1)
    )
    table = TenantActivity._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS a SET {sets} FROM jsonb_array_elements(%s::jsonb) AS e "
            "WHERE a.tenant_id = (e->>0)::bigint",
            [payload],
        )


def _json(value) -> str:
    """A JSON parameter for PostgreSQL, encoded in C (the standard library's encoder cost a
    tenth of a 10,000-tenant write)."""
    return msgspec.json.encode(value).decode()


@lru_cache(maxsize=4096)
def _agent(agent: str) -> tuple[str, ClientInfo]:
    """The stored agent and its client; a batch's tenants share a handful of agents."""
    return _printable(agent, AGENT_MAX), client_from_agent(agent)


def _fold(row: _Row, d: ActivityDelta, exhausted_at: datetime | None) -> bool:
    """Fold one delta into its row; True when it brought a newer refusal worth an email."""
    first, last = _at(d.first), _at(d.last)
    if first < row.first_seen_at:
        row.first_seen_at = first
    if last >= row.last_seen_at:
        row.last_seen_at = last
        if d.agent:
            row.user_agent, info = _agent(d.agent)
            row.client = info.kind
            row.client_version = info.version
            row.client_cli_version = info.cli_version
    elif not row.user_agent and d.agent:
        row.user_agent, info = _agent(d.agent)
        row.client = info.kind
        row.client_version, row.client_cli_version = info.version, info.cli_version
    if d.pulls:
        stored = [Pull.from_dict(p) for p in row.recent_pulls if isinstance(p, dict)]
        merged = pulls_merge(stored, d.pulls)
        row.recent_pulls = [p.as_dict() for p in merged]
        pulled = _at(max(p.last for p in d.pulls))
        if row.last_pull_at is None or pulled > row.last_pull_at:
            row.last_pull_at = pulled
    since = exhausted_at.timestamp() if exhausted_at is not None else None
    newer = False
    for status, (ts, uri) in sorted(d.refusals.items(), key=lambda kv: kv[1][0]):
        reason = refusal_reason(status=status, retired=d.retired, exhausted_since=since, ts=ts)
        if reason is None:
            continue
        at = _at(ts)
        if row.last_refusal_at is None or at >= row.last_refusal_at:
            row.last_refusal_reason = reason
            row.last_refusal_at = at
            row.last_refusal_path = _printable(uri, 300)
            newer = reason in NOTIFIED_REFUSALS
    return newer
