"""Threshold emails (80 % and 100 % of the month's allowance): queued after commit, sent once.

quota/enforcement.py writes the rows and queues each new one with notices_enqueue. The Celery
task that sends a row is defined here, not in quota/tasks.py, on purpose: enforcement must
queue it, and quota/tasks.py runs enforcement (the periodic reconcile), so a task there would
make the loop tasks -> settlement -> enforcement -> tasks, and sending it by name would only
hide that loop. The task keeps its registered name, "quota.tasks.quota_notice_send", so that
messages queued before a deploy still find it; workers register it through quota.tasks, which
imports this module (through settlement and enforcement).
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.language import language_for_user
from accounts.mail import email_render
from quota.models import QuotaNotice
from quota.month import month_summary

log = logging.getLogger(__name__)


class NoticeSendFailed(Exception):
    pass


def notice_send(*, notice_id: int) -> bool:
    """Claim the row (pending -> sending), send, mark sent. Returns True when this call sent it.

    A second call, or a concurrent one, finds the row claimed and sends nothing. A failed send
    puts the row back to pending and raises NoticeSendFailed so the task retries; a worker that
    dies between claim and send leaves a "sending" row that ledger_reconcile re-queues.
    """
    claimed = QuotaNotice.objects.filter(pk=notice_id, status=QuotaNotice.Status.PENDING).update(
        status=QuotaNotice.Status.SENDING
    )
    if not claimed:
        return False
    notice = QuotaNotice.objects.select_related("tenant__user").get(pk=notice_id)
    summary = month_summary(tenant=notice.tenant_id)
    context = {
        "notice": notice,
        "summary": summary,
        "exhausted": notice.threshold == QuotaNotice.Threshold.EXHAUSTED,
        "console_url": settings.SITE_URL.rstrip("/") + "/console/",
        "invites_url": settings.SITE_URL.rstrip("/") + "/invites/",
    }
    subject, body = email_render(
        template="quota/email/threshold",
        context=context,
        language=language_for_user(notice.tenant.user),
    )
    try:
        send_mail(
            subject,
            body,
            None,
            [notice.tenant.user.email],
        )
    except Exception as exc:  # SMTP errors come in many classes; all mean "try again later"
        QuotaNotice.objects.filter(pk=notice_id).update(status=QuotaNotice.Status.PENDING)
        log.warning("threshold email %s failed: %s", notice_id, exc)
        raise NoticeSendFailed(str(exc)) from exc
    with transaction.atomic():
        QuotaNotice.objects.filter(pk=notice_id).update(
            status=QuotaNotice.Status.SENT, sent_at=timezone.now()
        )
    return True


# Notices queued by one message at most: a batch that exhausts thousands of tenants queues a
# few messages, and a worker fans them out (queueing costs milliseconds per message).
_FAN_OUT = 500


def notices_enqueue(*, notice_ids: list[int]) -> None:
    """Queue the send of these rows once the caller's transaction commits (at once outside
    one): a worker must not look for a row that is not committed yet. Many rows go by a few
    fan-out messages (quota_notices_fan_out), not one message each."""
    if len(notice_ids) == 1:
        notice_id = notice_ids[0]
        transaction.on_commit(lambda: quota_notice_send.delay(notice_id))
        return
    for i in range(0, len(notice_ids), _FAN_OUT):
        part = list(notice_ids[i : i + _FAN_OUT])
        transaction.on_commit(lambda part=part: quota_notices_fan_out.delay(part))


@shared_task(
    name="quota.tasks.quota_notices_fan_out",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=120,
    time_limit=150,
)
def quota_notices_fan_out(notice_ids: list[int]) -> None:
    """Queue one send per row. Idempotent: run twice, each row is still sent once (the send
    claims its row), and rows whose message is lost are re-queued by the reconcile backstop."""
    for notice_id in notice_ids:
        quota_notice_send.delay(int(notice_id))


@shared_task(
    name="quota.tasks.quota_notice_send",
    acks_late=True,
    soft_time_limit=30,
    time_limit=60,
    bind=True,
    max_retries=5,
)
def quota_notice_send(self, notice_id: int) -> None:
    """Send one threshold email. Runs at most one send per notice row (compare-and-set claim)."""
    try:
        notice_send(notice_id=notice_id)
    except NoticeSendFailed as exc:
        raise self.retry(exc=exc, countdown=60) from exc
