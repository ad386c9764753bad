"""Refusals in plain words, and the refusal email: at most one a day per tenant while its pulls
are refused (quota used up, suspended, a rotated address still in use)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accelerator.clients import Refusal
from accelerator.models import TenantActivity
from accounts.language import language_for_user
from accounts.mail import email_render

log = logging.getLogger(__name__)

EMAIL_EVERY = timedelta(days=1)

REFUSAL_TEXT = {
    Refusal.EXHAUSTED: _(
        "quota used up — Docker pulled these from Docker Hub directly, without the accelerator"
    ),
    Refusal.SUSPENDED: _(
        "accelerator suspended — Docker pulled these from Docker Hub directly, without the "
        "accelerator"
    ),
    Refusal.ROTATED: _(
        "an old, rotated address is still configured on a machine — put the current address "
        "in its configuration"
    ),
    Refusal.RATE_LIMITED: _("too many requests at once — the client retried or fell back"),
}


def refusal_text(reason: str) -> str:
    return str(REFUSAL_TEXT.get(reason, reason))


def refusal_is_current(activity: TenantActivity) -> bool:
    """Pulls are being refused: the last refusal (one the user must act on) came after the last
    pull the accelerator served, and within the last day."""
    at = activity.last_refusal_at
    if at is None or activity.last_refusal_reason == Refusal.RATE_LIMITED:
        return False
    if timezone.now() - at > EMAIL_EVERY:
        return False
    return activity.last_pull_at is None or at > activity.last_pull_at


class RefusalSendFailed(Exception):
    pass


def refusal_notice_send(*, tenant_id: int, now: datetime | None = None) -> bool:
    """Email the tenant's owner about its current refusal, at most once per EMAIL_EVERY.
    Returns True when this call sent it. The claim is a compare-and-set on refusal_emailed_at,
    so concurrent calls send one email; a failed send gives the claim back."""
    now = now or timezone.now()
    activity = (
        TenantActivity.objects.select_related("tenant__user").filter(tenant_id=tenant_id).first()
    )
    if activity is None or not refusal_is_current(activity):
        return False
    previous = activity.refusal_emailed_at
    claimed = (
        TenantActivity.objects.filter(tenant_id=tenant_id)
        .filter(Q(refusal_emailed_at__isnull=True) | Q(refusal_emailed_at__lte=now - EMAIL_EVERY))
        .update(refusal_emailed_at=now)
    )
    if not claimed:
        return False
    user = activity.tenant.user
    subject, body = email_render(
        template="accelerator/email/refused",
        context={
            # Lazy: rendered in the reader's language.
            "reason": REFUSAL_TEXT.get(activity.last_refusal_reason, ""),
            "refused_at": activity.last_refusal_at,
            "console_url": settings.SITE_URL.rstrip("/") + "/console/",
        },
        language=language_for_user(user),
    )
    try:
        send_mail(subject, body, None, [user.email])
    except Exception as exc:  # SMTP errors come in many classes; all mean "try again later"
        TenantActivity.objects.filter(tenant_id=tenant_id, refusal_emailed_at=now).update(
            refusal_emailed_at=previous
        )
        log.warning("refusal email for tenant %s failed: %s", tenant_id, exc)
        raise RefusalSendFailed(str(exc)) from exc
    return True
