"""Enforcement: a tenant's exhausted and low states and its threshold notices, in line with its
month.

tenant_enforce is the one writer of all three; it records the notice rows that became due and
queues their emails (quota/notices.py) after commit. Grants, the after-usage settlement and
the reconcile backstop call it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accelerator import services as tenant_services
from accelerator.gate import is_low
from accelerator.models import Tenant
from quota.models import QuotaNotice
from quota.month import MonthSummary, month_summary
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
    now = utc(now or timezone.now())
    with transaction.atomic():
        locked = (
            Tenant.objects.select_for_update(no_key=True)
            .filter(pk=tenant_id)
            .values_list("pk", "exhausted_at", "low_at")
            .first()
        )
        if locked is None:
            return None
        was_exhausted = locked[1] is not None
        was_low = locked[2] is not None
        summary = month_summary(tenant=tenant_id, now=now)
        # Under the lock the state read above is current: write only when it changes.
        if summary.exhausted and not was_exhausted:
            tenant_services.tenant_mark_exhausted(tenant_id=tenant_id, at=now)
            log.info("tenant %s exhausted (used %s B)", tenant_id, summary.used)
        elif was_exhausted and not summary.exhausted:
            tenant_services.tenant_clear_exhausted(tenant_id=tenant_id)
            log.info("tenant %s re-opened (remaining %s B)", tenant_id, summary.remaining)
        # Low (throttled at the edge) stays set while exhausted: a grant that re-opens a
        # tenant only a little keeps it throttled.
        low = is_low(remaining=summary.remaining, allowance=summary.allowance)
        if low and not was_low:
            tenant_services.tenant_mark_low(tenant_id=tenant_id, at=now)
        elif was_low and not low:
            tenant_services.tenant_clear_low(tenant_id=tenant_id)
        _usage_warning(tenant_id=tenant_id, summary=summary)
        notices_enqueue(notice_ids=_notices_record(tenant_id=tenant_id, summary=summary, now=now))
    return summary


def _usage_warning(*, tenant_id: int, summary: MonthSummary) -> None:
    """From 80 % of the allowance (the threshold email's rule), the edge adds a Warning to
    manifest answers. ``used`` is rounded down to 1 % of the allowance: the text, and so the
    edge's map, changes at most a hundred times a month."""
    allowance = summary.allowance
    if allowance > 0 and summary.charged * 5 >= allowance * 4:
        step = max(1, allowance // 100)
        used: int | None = summary.charged // step * step
        limit: int | None = allowance
    else:
        used = limit = None
    tenant_services.tenant_set_usage_warning(tenant_id=tenant_id, used=used, allowance=limit)


def _notices_record(*, tenant_id: int, summary: MonthSummary, now: datetime) -> list[int]:
    """Insert this month's threshold rows that are due; the unique key makes each happen once.

    Returns the ids of the rows this call created pending (the ones whose email must go).
    """
    reached = []
    if summary.charged > 0 and summary.charged * 5 >= summary.allowance * 4:
        reached.append(QuotaNotice.Threshold.WARN)
    if summary.exhausted:
        reached.append(QuotaNotice.Threshold.EXHAUSTED)
    if not reached:
        return []
    month = summary.month_start.date()
    existing = set(
        QuotaNotice.objects.filter(
            tenant_id=tenant_id, month=month, threshold__in=reached
        ).values_list("threshold", flat=True)
    )
    if existing.issuperset(reached):
        return []
    top = max(reached)
    pending = []
    for threshold in reached:
        status = QuotaNotice.Status.PENDING if threshold == top else QuotaNotice.Status.SKIPPED
        notice, created = QuotaNotice.objects.get_or_create(
            tenant_id=tenant_id,
            month=month,
            threshold=threshold,
            defaults={"status": status, "created_at": now},
        )
        if created and status == QuotaNotice.Status.PENDING:
            pending.append(notice.pk)
    return pending
