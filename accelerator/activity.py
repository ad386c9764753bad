"""Writes of TenantActivity: what the edge saw of each tenant, folded in once per ingested batch.

Invariants:
- activity_record joins the caller's transaction (ingestion commits it with the batch and its
  log position), so a replayed batch is rolled back with everything else and never counted
  twice. Rows are locked in tenant order, so two edges' workers take turns without deadlock.
- First seen only moves back, last seen only forward; the client is the one of the latest
  request; pulls fold by accelerator.clients' rule and keep the 20 latest.
- A refusal the user should hear about (exhausted, suspended, rotated address) queues at most
  one email a day (accelerator.tasks), after commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from accelerator.clients import (
    AGENT_MAX,
    Pull,
    Refusal,
    client_from_agent,
    pulls_merge,
    refusal_reason,
)
from accelerator.models import Tenant, TenantActivity
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
    return "".join(c for c in text[: limit * 2] if c.isprintable())[:limit]


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def activity_record(*, deltas: Iterable[ActivityDelta], now: datetime | None = None) -> list[int]:
    """Fold a batch's deltas into the tenants' activity rows (caller's transaction). Returns the
    ids of tenants whose new refusal may deserve an email (queued after commit)."""
    deltas = sorted(deltas, key=lambda d: (d.tenant_id, d.last))
    if not deltas:
        return []
    now = now or timezone.now()
    ids = sorted({d.tenant_id for d in deltas})
    with transaction.atomic():
        TenantActivity.objects.bulk_create(
            [
                TenantActivity(
                    tenant_id=d.tenant_id, first_seen_at=_at(d.first), last_seen_at=_at(d.first)
                )
                for d in {d.tenant_id: d for d in deltas}.values()
            ],
            ignore_conflicts=True,
        )
        rows = {
            a.tenant_id: a
            for a in TenantActivity.objects.select_for_update()
            .filter(tenant_id__in=ids)
            .order_by("tenant_id")
        }
        exhausted = dict(Tenant.objects.filter(pk__in=ids).values_list("pk", "exhausted_at"))
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


def _write(rows: list[TenantActivity]) -> None:
    """Write the folded rows back. PostgreSQL: one UPDATE over arrays (unnest), whatever the
    number of tenants in the batch (Django's bulk_update builds a CASE per row and field, which
    took seconds for a batch of 10,000 tenants). Others: bulk_update."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        TenantActivity.objects.bulk_update(rows, [name for name, _ in _FIELDS], batch_size=500)
        return
    table = TenantActivity._meta.db_table
    columns = ", ".join(name for name, _ in _FIELDS)
    arrays = ", ".join(f"%s::{'text' if kind == 'jsonb' else kind}[]" for _name, kind in _FIELDS)
    sets = ", ".join(
        f"{name} = v.{name}::jsonb" if kind == "jsonb" else f"{name} = v.{name}"
        for name, kind in _FIELDS
    )
    params: list = [[r.tenant_id for r in rows]]
    for name, kind in _FIELDS:
        values = [getattr(r, name) for r in rows]
        params.append([json.dumps(v) for v in values] if kind == "jsonb" else values)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS a SET {sets} "
            f"FROM unnest(%s::bigint[], {arrays}) AS v(tenant_id, {columns}) "
            "WHERE a.tenant_id = v.tenant_id",
            params,
        )


def _fold(row: TenantActivity, d: ActivityDelta, exhausted_at: datetime | None) -> bool:
    """Fold one delta into its row; True when it brought a newer refusal worth an email."""
    first, last = _at(d.first), _at(d.last)
    if first < row.first_seen_at:
        row.first_seen_at = first
    if last >= row.last_seen_at:
        row.last_seen_at = last
        if d.agent:
            info = client_from_agent(d.agent)
            row.user_agent = _printable(d.agent, AGENT_MAX)
            row.client = info.kind
            row.client_version = info.version
            row.client_cli_version = info.cli_version
    elif not row.user_agent and d.agent:
        info = client_from_agent(d.agent)
        row.user_agent, row.client = _printable(d.agent, AGENT_MAX), info.kind
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
