"""Writes about invites: personal codes, accepting an invite at sign-up, invite emails, and the
refusals' messages. The one-time credit an invite earns is the ledger's (quota/invites.py).

Rules:
- Every user has one personal, random, URL-safe invite code, issued on first use.
- An invite is recorded only when an account is created through a link (or ?invite=); an
  existing account never gains an inviter, and never a second one.
- Refused, with a message for the user and nothing recorded: malformed or unknown codes,
  the code of a deleted, deactivated or suspended user, one's own code, a second inviter.
- Invite emails: a valid address that has no account, not one's own, at most
  INVITE_EMAILS_PER_DAY in any 24 hours per user, one per address per 24 hours.
"""

from __future__ import annotations

import logging
import re
import secrets
from datetime import datetime, timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from accounts.models import Invite, InviteEmail, User
from accounts.tasks import invite_email_deliver

log = logging.getLogger(__name__)

CODE_RE = re.compile(r"^[A-Za-z0-9_-]{8,32}$")


class InviteRefused(Exception):
    """An invite action refused; `message` is for the user, `reason` a stable key for code."""

    def __init__(self, reason: str, message) -> None:
        super().__init__(str(message))
        self.reason = reason
        self.message = message


MALFORMED = "malformed"
UNKNOWN = "unknown"
INACTIVE = "inactive"
SELF = "self"
SECOND = "second_inviter"
EXISTING_ACCOUNT = "existing_account"


def _refuse(reason: str) -> InviteRefused:
    messages = {
        MALFORMED: _("This invite link is malformed. Check that you copied all of it."),
        UNKNOWN: _("This invite link is not valid. Ask your friend for a new one."),
        INACTIVE: _("This invite link no longer works: its owner's account is not active."),
        SELF: _("You cannot invite yourself."),
        SECOND: _("Your account was already invited by someone else; it can have one inviter."),
        EXISTING_ACCOUNT: _("Invites are for new accounts, and you already have one."),
    }
    return InviteRefused(reason, messages[reason])


def invite_code_get(*, user: User) -> str:
    """The user's invite code, issued on the first call (compare-and-set, race-safe)."""
    if user.invite_code:
        return user.invite_code
    for _attempt in range(5):
        code = secrets.token_urlsafe(9)  # 12 characters, 72 bits
        try:
            with transaction.atomic():
                User.objects.filter(pk=user.pk, invite_code__isnull=True).update(invite_code=code)
        except IntegrityError:
            continue  # another user holds this code (practically never)
        user.invite_code = User.objects.values_list("invite_code", flat=True).get(pk=user.pk)
        return user.invite_code
    raise RuntimeError("could not issue an invite code")


def inviter_for_code(*, code: str) -> User:
    """The active user whose invite code this is, or InviteRefused."""
    if not isinstance(code, str) or not CODE_RE.match(code):
        raise _refuse(MALFORMED)
    inviter = User.objects.filter(invite_code=code).select_related("tenant").first()
    if inviter is None:
        # A deleted user's code is simply gone.
        raise _refuse(UNKNOWN)
    tenant = getattr(inviter, "tenant", None)
    if not inviter.is_active or (tenant is not None and tenant.state == "suspended"):
        raise _refuse(INACTIVE)
    return inviter


def invite_check_for_visitor(*, code: str, user: User | None) -> User:
    """What /invite/<code> checks before it sends a visitor to sign-up; returns the inviter."""
    inviter = inviter_for_code(code=code)
    if user is not None and user.is_authenticated:
        if user.pk == inviter.pk:
            raise _refuse(SELF)
        if Invite.objects.filter(invitee=user).exists():
            raise _refuse(SECOND)
        raise _refuse(EXISTING_ACCOUNT)
    return inviter


def invite_accept(*, invitee: User, code: str) -> Invite:
    """Record that `invitee` signed up through `code`. Called once, right after sign-up."""
    inviter = inviter_for_code(code=code)
    if inviter.pk == invitee.pk:
        raise _refuse(SELF)
    try:
        with transaction.atomic():
            invite = Invite.objects.create(inviter=inviter, invitee=invitee, code=code)
    except IntegrityError:
        raise _refuse(SECOND) from None
    log.info("user %s signed up invited by %s", invitee.pk, inviter.pk)
    return invite


def _address_has_account(email: str) -> bool:
    return (
        User.objects.filter(email__iexact=email).exists()
        or EmailAddress.objects.filter(email__iexact=email).exists()
    )


def invite_email_send(*, inviter: User, email: str, link: str, now: datetime | None = None):
    """Record an invite email and queue it (sent after commit). Refusals raise InviteRefused."""
    now = now or timezone.now()
    email = (email or "").strip().lower()
    try:
        validate_email(email)
        if len(email) > 254:
            raise ValidationError("too long")
    except ValidationError:
        raise InviteRefused("invalid_email", _("Enter a valid email address.")) from None
    if email == inviter.email.lower():
        raise _refuse(SELF)
    if _address_has_account(email):
        raise InviteRefused(
            "has_account", _("This address already has an account, so it cannot be invited.")
        )
    limit = settings.INVITE_EMAILS_PER_DAY
    with transaction.atomic():
        # The inviter's row serializes concurrent sends, so the daily count cannot be overrun.
        User.objects.select_for_update(no_key=True).filter(pk=inviter.pk).values_list("pk").first()
        recent = InviteEmail.objects.filter(inviter=inviter, sent_at__gt=now - timedelta(days=1))
        if recent.filter(email=email).exists():
            raise InviteRefused(
                "duplicate", _("You already invited this address in the last 24 hours.")
            )
        if recent.count() >= limit:
            raise InviteRefused(
                "rate_limited",
                _("You can send at most %(limit)d invite emails a day. Try again tomorrow.")
                % {"limit": limit},
            )
        record = InviteEmail.objects.create(inviter=inviter, email=email, sent_at=now)
        # Written in the language the inviter is using now.
        language = translation.get_language()
        transaction.on_commit(lambda: invite_email_deliver.delay(record.pk, link, language))
    return record


def mask_email(email: str) -> str:
    """'friend@example.com' -> 'fr****@example.com': enough to recognise, not to harvest."""
    local, _at, domain = email.partition("@")
    shown = local[:2] if len(local) > 2 else local[:1]
    return f"{shown}{'*' * max(1, len(local) - len(shown))}@{domain}"


def invite_sent_message(*, email: str) -> str:
    return _("Invite sent to %(email)s.") % {"email": email.strip().lower()}
