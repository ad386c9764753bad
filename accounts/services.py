"""Writes about invites: personal codes, accepting an invite at sign-up, invite emails, and the
refusals' messages. The one-time credit an invite earns is the ledger's (quota/invites.py).

Rules:
- Every user has one personal, random, URL-safe invite code, issued on first use.
- An invite is recorded only when an account is created through a link (or ?invite=); an
  existing account never gains an inviter, and never a second one.
- Refused, with a message for the user and nothing recorded: malformed or unknown codes,
  the code of a deleted, deactivated or suspended user, one's own code, a second inviter.
- Invite emails: at most INVITE_EMAILS_PER_DAY attempts in any 24 hours per user, every
  attempt at a valid address counted, refused ones included; one per mailbox per 24 hours;
  not one's own. An address that already has an account (any alias of its mailbox) gets no
  email, and the inviter gets the same answer as for a new address (no enumeration).
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

from accounts.addresses import email_canonical
from accounts.models import Invite, InviteEmail, User
from accounts.selectors import user_for_mailbox
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
        user_for_mailbox(email=email) is not None
        or EmailAddress.objects.filter(email__iexact=email).exists()
    )


def invite_email_send(*, inviter: User, email: str, link: str, now: datetime | None = None):
    """Record an invite email attempt and queue the email (sent after commit) when it may go.

    Refusals raise InviteRefused after the attempt was recorded, so they count too. An address
    with an account is answered as a new one: recorded, counted, not sent.
    """
    now = now or timezone.now()
    email = (email or "").strip().lower()
    try:
        validate_email(email)
        if len(email) > 254:
            raise ValidationError("too long")
    except ValidationError:
        raise InviteRefused("invalid_email", _("Enter a valid email address.")) from None
    limit = settings.INVITE_EMAILS_PER_DAY
    canonical = email_canonical(email)
    Outcome = InviteEmail.Outcome
    with transaction.atomic():
        # The inviter's row serializes concurrent sends, so the daily count cannot be overrun.
        User.objects.select_for_update(no_key=True).filter(pk=inviter.pk).values_list("pk").first()
        recent = InviteEmail.objects.filter(inviter=inviter, sent_at__gt=now - timedelta(days=1))
        earlier = recent.filter(outcome__in=[Outcome.SENT, Outcome.HAS_ACCOUNT])
        if canonical == email_canonical(inviter.email):
            outcome = Outcome.SELF
        elif any(email_canonical(e) == canonical for e in earlier.values_list("email", flat=True)):
            outcome = Outcome.DUPLICATE
        elif _address_has_account(email):
            outcome = Outcome.HAS_ACCOUNT
        else:
            outcome = Outcome.SENT
        # Past the limit nothing more is recorded: a refusal says why, anything else waits.
        if recent.count() < limit:
            record = InviteEmail.objects.create(
                inviter=inviter, email=email, sent_at=now, outcome=outcome
            )
        elif outcome in (Outcome.SENT, Outcome.HAS_ACCOUNT):
            raise InviteRefused(
                "rate_limited",
                _("You can send at most %(limit)d invite emails a day. Try again tomorrow.")
                % {"limit": limit},
            )
        if outcome == Outcome.SENT:
            # Written in the language the inviter is using now.
            language = translation.get_language()
            transaction.on_commit(lambda: invite_email_deliver.delay(record.pk, link, language))
    if outcome == Outcome.SELF:
        raise _refuse(SELF)
    if outcome == Outcome.DUPLICATE:
        raise InviteRefused(
            "duplicate", _("You already invited this address in the last 24 hours.")
        )
    if outcome == Outcome.HAS_ACCOUNT:
        log.info("invite email %s not sent: the address has an account", record.pk)
    return record


def invite_sent_message(*, email: str) -> str:
    return _("Invite sent to %(email)s.") % {"email": email.strip().lower()}
