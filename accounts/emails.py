"""Rendering and sending the invite email (the rules about who may be invited are in
accounts.services)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail

from accounts.language import language_for_user, language_pick
from accounts.mail import email_render
from accounts.models import InviteEmail

log = logging.getLogger(__name__)


class EmailFailed(Exception):
    pass


def invite_email_render_and_send(
    *, invite_email_id: int, link: str, language: str | None = None
) -> bool:
    """`language`: the one the inviter was using when sending (else the inviter's saved one)."""
    record = InviteEmail.objects.select_related("inviter").filter(pk=invite_email_id).first()
    if record is None:
        return False
    context = {
        "inviter": record.inviter.email,
        "link": link,
        "bonus": settings.WELCOME_BONUS_BYTES,
        "base": settings.QUOTA_MONTHLY_BYTES,
    }
    language = language_pick(language, language_for_user(record.inviter))
    subject, body = email_render(
        template="accounts/email/invite", context=context, language=language
    )
    try:
        send_mail(
            subject,
            body,
            None,
            [record.email],
        )
    except Exception as exc:  # SMTP errors come in many classes; all mean "try again later"
        log.warning("invite email %s failed: %s", invite_email_id, exc)
        raise EmailFailed(str(exc)) from exc
    return True
