"""Enforcement: a tenant's exhausted and low states and its threshold notices, in line with its
month.

tenants_enforce is the one writer of all three (tenant_enforce is it for one tenant); it
records the notice rows that became due and queues their emails (quota/notices.py) after
commit. Grants, the after-usage settlement and the reconcile backstop call it. It decides a
whole batch's tenants in a few queries per chunk of tenants (bench/ingest.py times it for
10,000), never one tenant at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime

from django.db import connection, transaction
from django.utils import timezone

from accelerator import services as tenant_services
from accelerator.gate import is_low
from accelerator.models import Tenant
from accelerator.sql import day_epoch, ids_in, numbers_joined
from quota.models import QuotaNotice
from quota.month import MonthSummary, month_summaries
from quota.notices import notices_enqueue
from quota.periods import utc

log = logging.getLogger(__name__)


def tenant_enforce(*, tenant_id: int, now: datetime | None = None) -> MonthSummary | None:
    """Bring a tenant's exhausted and low states and threshold notices in line with its summary.

    Idempotent. Holds the tenant row lock while it reads and writes, so two workers evaluating
    the same tenant take turns and the later one sees everything the earlier one saw; a worker
    that committed usage after this read calls it again afterwards. Emails go out by a task
    after commit. Returns None for a tenant that no longer exists.
    """
    return tenants_enforce(tenant_ids=[tenant_id], now=now).get(tenant_id)


# Tenants decided per transaction: bounds how long a batch's settlement holds row locks that a
# grant or the backstop may be waiting for.
_CHUNK = 2_000


def tenants_enforce(
    *, tenant_ids: Iterable[int], now: datetime | None = None
) -> dict[int, MonthSummary]:
    """tenant_enforce for many tenants, set-based: per chunk of tenants one transaction that
    locks their rows (in id order, so two callers cannot deadlock), summarises them all
    (quota.month.month_summaries), writes the state changes one statement per kind and records
    the notices that became due in one insert. Returns the summaries of the tenants that exist.
    Same guarantees as tenant_enforce."""
    now = utc(now or timezone.now())
    ids = sorted(set(tenant_ids))
    summaries: dict[int, MonthSummary] = {}
    for i in range(0, len(ids), _CHUNK):
        summaries.update(_enforce_chunk(tenant_ids=ids[i : i + _CHUNK], now=now))
    return summaries


def _enforce_chunk(*, tenant_ids: list[int], now: datetime) -> dict[int, MonthSummary]:
    with transaction.atomic():
        locked = list(
            Tenant.objects.select_for_update(no_key=True)
            .filter(pk__in=ids_in(tenant_ids))
            .order_by("pk")
            .values_list("pk", "exhausted_at", "low_at", "warn_used", "warn_allowance")
        )
        if not locked:
            return {}
        # Read under the locks: every usage committed before them is in these summaries.
        summaries = month_summaries(tenant_ids=[row[0] for row in locked], now=now)
        mark_exhausted, clear_exhausted, mark_low, clear_low = [], [], [], []
        warnings: dict[int, tuple[int | None, int | None]] = {}
        for tenant_id, exhausted_at, low_at, warn_used, warn_allowance in locked:
            summary = summaries[tenant_id]
            # Under the lock the state read above is current: write only when it changes.
            if summary.exhausted and exhausted_at is None:
                mark_exhausted.append(tenant_id)
                log.info("tenant %s exhausted (used %s B)", tenant_id, summary.used)
            elif exhausted_at is not None and not summary.exhausted:
                clear_exhausted.append(tenant_id)
                log.info("tenant %s re-opened (remaining %s B)", tenant_id, summary.remaining)
            # Low (throttled at the edge) stays set while exhausted: a grant that re-opens a
            # tenant only a little keeps it throttled.
            low = is_low(remaining=summary.remaining, allowance=summary.allowance)
            if low and low_at is None:
                mark_low.append(tenant_id)
            elif low_at is not None and not low:
                clear_low.append(tenant_id)
            warning = _usage_warning(summary)
            if warning != (warn_used, warn_allowance):
                warnings[tenant_id] = warning
        tenant_services.tenants_set_quota_states(
            at=now,
            mark_exhausted=mark_exhausted,
            clear_exhausted=clear_exhausted,
            mark_low=mark_low,
            clear_low=clear_low,
        )
        tenant_services.tenants_set_usage_warnings(warnings=warnings)
        notices_enqueue(notice_ids=_notices_record(summaries=summaries, now=now))
    return summaries


def _past_warning(summary: MonthSummary) -> bool:
    """80 % of the allowance used: the threshold email and the edge's usage Warning."""
    return summary.charged > 0 and summary.charged * 5 >= summary.allowance * 4


def _usage_warning(summary: MonthSummary) -> tuple[int | None, int | None]:
    """From 80 % of the allowance (the threshold email's rule), the edge adds a Warning to
    manifest answers: (used, allowance), else (None, None). ``used`` is rounded down to 1 % of
    the allowance: the text, and so the edge's map, changes at most a hundred times a month."""
    allowance = summary.allowance
    if allowance > 0 and _past_warning(summary):
        step = max(1, allowance // 100)
        return summary.charged // step * step, allowance
    return None, None


def _notices_record(*, summaries: dict[int, MonthSummary], now: datetime) -> list[int]:
    """Insert this month's threshold rows that are due; the unique key makes each happen once.

    Returns the ids of the rows this call created pending (the ones whose email must go). Of
    thresholds reached together, only the highest is pending (one email), the others skipped.
    """
    warn, full = int(QuotaNotice.Threshold.WARN), int(QuotaNotice.Threshold.EXHAUSTED)
    pending, skipped = str(QuotaNotice.Status.PENDING), str(QuotaNotice.Status.SKIPPED)
    due: list[tuple[int, date, int, str]] = []
    for tenant_id, summary in summaries.items():
        reached_warn = _past_warning(summary)
        if not (reached_warn or summary.exhausted):
            continue
        month = summary.month_start.date()
        if summary.exhausted:
            due.append((tenant_id, month, full, pending))
            if reached_warn:
                due.append((tenant_id, month, warn, skipped))
        else:
            due.append((tenant_id, month, warn, pending))
    if not due:
        return []
    existing = set()
    for month in {m for _t, m, _th, _s in due}:
        existing |= set(
            QuotaNotice.objects.filter(
                month=month, tenant_id__in=ids_in({t for t, m, _th, _s in due if m == month})
            ).values_list("tenant_id", "threshold")
        )
    # The caller holds these tenants' row locks, and only enforcement records notices: no
    # other writer can insert one of these rows meanwhile.
    new = [row for row in due if (row[0], row[2]) not in existing]
    if not new:
        return []
    if connection.vendor == "postgresql":
        return _notices_insert(rows=new, now=now)
    created = QuotaNotice.objects.bulk_create(
        [
            QuotaNotice(tenant_id=t, month=m, threshold=th, status=st, created_at=now)
            for t, m, th, st in new
        ]
    )
    return [n.pk for n in created if n.status == pending]


def _notices_insert(*, rows: list[tuple[int, date, int, str]], now: datetime) -> list[int]:
    """PostgreSQL: the rows in one statement (numbers as text the server splits, as in
    quota.usage); returns the ids of the pending ones."""
    table = QuotaNotice._meta.db_table
    pending = str(QuotaNotice.Status.PENDING)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (tenant_id, month, threshold, status, created_at) "
            "SELECT t, (to_timestamp(m) AT TIME ZONE 'UTC')::date, th, "
            "CASE WHEN p = 1 THEN %s ELSE %s END, %s FROM unnest("
            + ", ".join(["string_to_array(%s, ',')::bigint[]"] * 4)
            + ") AS u(t, m, th, p) RETURNING id, status",
            [
                pending,
                str(QuotaNotice.Status.SKIPPED),
                now,
                numbers_joined(t for t, _m, _th, _s in rows),
                numbers_joined(day_epoch(m) for _t, m, _th, _s in rows),
                numbers_joined(th for _t, _m, th, _s in rows),
                numbers_joined(1 if st == pending else 0 for _t, _m, _th, st in rows),
            ],
        )
        return sorted(pk for pk, status in cursor.fetchall() if status == pending)
