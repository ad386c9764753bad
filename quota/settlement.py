"""Settlement after usage, and the backstop: what follows committed usage for each tenant.

After ingestion commits a batch: enforcement (state and threshold emails) and the invite
credit once the invitee's usage makes it due. Periodically (quota/tasks.py, `manage.py
ledger_reconcile`): the same for every tenant whose state can have changed without new usage,
invites due by age alone, and the emails that never left.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from accelerator.models import Tenant
from accelerator.sql import ids_in
from accounts.models import Invite
from quota.enforcement import tenants_enforce
from quota.invites import invite_credit, invites_credit_pending
from quota.models import QuotaNotice, UsageMonth
from quota.notices import notices_enqueue
from quota.periods import month_start, utc
from quota.selectors import tenants_maybe_in_debt


def usage_after_batch(*, tenant_ids: Iterable[int]) -> None:
    """Called by ingestion after it committed a batch: enforcement, threshold emails and the
    invite credit for each tenant. Idempotent; safe from two workers at once. Enforcement is
    set-based (tenants_enforce): a batch of 10,000 tenants is a few queries, not 10,000 rounds.
    """
    ids = sorted(set(tenant_ids))
    tenants_enforce(tenant_ids=ids)
    user_ids = Tenant.objects.filter(
        pk__in=ids_in(ids), user__invited_by__status=Invite.Status.PENDING
    )
    for user_id in user_ids.values_list("user_id", flat=True):
        invite_credit(invitee_id=user_id)


@dataclass(frozen=True)
class ReconcileResult:
    evaluated: int
    exhausted: int
    notices_requeued: int
    invites_credited: int


def ledger_reconcile(*, now: datetime | None = None) -> ReconcileResult:
    """The backstop: re-evaluate every tenant whose state can differ from its summary (a new
    month, an expired grant, a missed batch), re-queue notices whose email never left, and
    decide invites that became due (a missed batch or verification, or the invitee account's
    age alone, with no new usage). Idempotent.

    Only tenants whose debt brought into this month plus this month's usage reaches 80 % of
    the base can be exhausted or owe a threshold email (the allowance is never below the base,
    and the debt counts like usage), so the candidates are the tenants exhausted now, those
    that used 80 % of the base this month (the rollup's (month) index) and those that
    can bring a debt from last month (quota.selectors.tenants_maybe_in_debt).
    """
    now = utc(now or timezone.now())
    month = month_start(now).date()
    threshold = settings.QUOTA_MONTHLY_BYTES * 4 // 5
    candidates = (
        set(Tenant.objects.filter(exhausted_at__isnull=False).values_list("pk", flat=True))
        | set(
            UsageMonth.objects.filter(month=month, bytes__gte=threshold).values_list(
                "tenant_id", flat=True
            )
        )
        | tenants_maybe_in_debt(month=month)
        # A warning from last month's usage goes with the month.
        | set(Tenant.objects.filter(warn_used__isnull=False).values_list("pk", flat=True))
    )
    summaries = tenants_enforce(tenant_ids=candidates, now=now)
    exhausted = sum(summary.exhausted for summary in summaries.values())
    stale = QuotaNotice.objects.filter(
        status__in=[QuotaNotice.Status.PENDING, QuotaNotice.Status.SENDING],
        created_at__lt=now - timedelta(minutes=10),
    ).values_list("pk", flat=True)
    requeued = 0
    stale = list(stale)
    for notice_id in stale:
        # A "sending" row older than ten minutes belongs to a worker that died mid-send.
        QuotaNotice.objects.filter(pk=notice_id, status=QuotaNotice.Status.SENDING).update(
            status=QuotaNotice.Status.PENDING
        )
        notices_enqueue(notice_ids=[notice_id])
        requeued += 1
    credited = invites_credit_pending(now=now)
    return ReconcileResult(
        evaluated=len(candidates),
        exhausted=exhausted,
        notices_requeued=requeued,
        invites_credited=credited,
    )
