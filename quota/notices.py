"""Threshold emails (80 % and 100 % of the month's allowance). The rows are written by the
ledger's enforcement; this module only sends them, once per row.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from accounts.language import language_for_user
from accounts.mail import email_render
from quota import ledger
from quota.models import QuotaNotice

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
    summary = ledger.month_summary(tenant=notice.tenant_id)
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
