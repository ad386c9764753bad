"""Writes about invites: personal codes, accepting an invite at sign-up, invite emails, and the
one-time credit. The bytes come from settings; the grants go through quota.ledger.

Rules:
- Every user has one personal, random, URL-safe invite code, issued on first use.
- An invite is recorded only when an account is created through a link (or ?invite=); an
  existing account never gains an inviter, and never a second one.
- Refused, with a message for the user and nothing recorded: malformed or unknown codes,
  the code of a deleted, deactivated or suspended user, one's own code, a second inviter.
- Credit, exactly once, when the invitee has a verified email address and a usage bucket with
  bytes > 0: WELCOME_BONUS_BYTES to the invitee, and INVITE_BONUS_BYTES to the inviter while
  the inviter has fewer than INVITE_CAP credited invites (past the cap the invitee still gets
  the welcome bonus; the inviter gets nothing more, and nothing while deactivated or
  suspended). An inviter without an accelerator gets one started to hold the bonus.
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

from accounts.language import language_for_user
from accounts.models import Invite, InviteEmail, User

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
    from accounts.tasks import invite_email_deliver

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


def invite_credit(*, invitee_id: int, now: datetime | None = None) -> bool:
    """Credit the invite of `invitee_id` if it is due. Exactly once; safe from two workers.

    Returns True when this call credited it.
    """
    from accelerator.models import Tenant
    from accelerator.services import tenant_start
    from quota import ledger
    from quota.models import Grant, UsageBucket

    now = now or timezone.now()
    with transaction.atomic():
        invite = (
            Invite.objects.select_for_update()
            .filter(invitee_id=invitee_id, credited_at__isnull=True)
            .first()
        )
        if invite is None:
            return False
        if not EmailAddress.objects.filter(user_id=invitee_id, verified=True).exists():
            return False
        tenant = Tenant.objects.filter(user_id=invitee_id).first()
        if tenant is None or not UsageBucket.objects.filter(tenant=tenant, bytes__gt=0).exists():
            return False
        inviter_bytes = 0
        if invite.inviter_id is not None:
            # The inviter's row serializes credits of one inviter, so the cap holds.
            inviter = (
                User.objects.select_for_update(no_key=True).filter(pk=invite.inviter_id).first()
            )
            credited = Invite.objects.filter(
                inviter_id=invite.inviter_id, credited_at__isnull=False, inviter_bytes__gt=0
            ).count()
            suspended = Tenant.objects.filter(
                user_id=invite.inviter_id, state=Tenant.State.SUSPENDED
            ).exists()
            if (
                inviter is not None
                and inviter.is_active
                and not suspended
                and credited < settings.INVITE_CAP
            ):
                inviter_bytes = settings.INVITE_BONUS_BYTES
        invitee_bytes = settings.WELCOME_BONUS_BYTES
        invite.credited_at = now
        invite.inviter_bytes = inviter_bytes
        invite.invitee_bytes = invitee_bytes
        invite.save(update_fields=["credited_at", "inviter_bytes", "invitee_bytes"])
        invitee_email = invite.invitee.email
        # A grant's note is stored text, shown in the receiver's console: written in the
        # receiver's language, whoever (a task, the other person's request) credits it.
        if invitee_bytes > 0:
            with translation.override(language_for_user(invite.invitee)):
                note = str(_("Welcome bonus: you joined through an invite"))
            ledger.grant_create(
                tenant=tenant,
                kind=Grant.Kind.WELCOME,
                bytes=invitee_bytes,
                source_key=f"invite:{invite.pk}:welcome",
                note=note,
                now=now,
            )
        if inviter_bytes > 0:
            inviter_tenant = tenant_start(user=inviter)
            with translation.override(language_for_user(inviter)):
                note = str(
                    _("Invite bonus: %(email)s joined") % {"email": mask_email(invitee_email)}
                )
            ledger.grant_create(
                tenant=inviter_tenant,
                kind=Grant.Kind.INVITE,
                bytes=inviter_bytes,
                source_key=f"invite:{invite.pk}:inviter",
                note=note,
                now=now,
            )
    log.info("invite %s credited: %s B / %s B", invite.pk, inviter_bytes, invitee_bytes)
    return True


def invites_credit_pending(*, now: datetime | None = None, limit: int = 1000) -> int:
    """The backstop: credit invites whose first usage or verification was missed."""
    from quota.models import UsageBucket

    due = (
        Invite.objects.filter(credited_at__isnull=True)
        .filter(invitee__emailaddress__verified=True)
        .filter(invitee__tenant__in=UsageBucket.objects.filter(bytes__gt=0).values("tenant_id"))
        .values_list("invitee_id", flat=True)
        .distinct()[:limit]
    )
    return sum(invite_credit(invitee_id=invitee_id, now=now) for invitee_id in list(due))


def mask_email(email: str) -> str:
    """'friend@example.com' -> 'fr****@example.com': enough to recognise, not to harvest."""
    local, _at, domain = email.partition("@")
    shown = local[:2] if len(local) > 2 else local[:1]
    return f"{shown}{'*' * max(1, len(local) - len(shown))}@{domain}"


def invited_message(*, inviter: User) -> str:
    from quota.units import format_bytes

    return _(
        "%(inviter)s invited you. Sign up, confirm your email address and pull your first "
        "image to get a welcome bonus of %(bonus)s."
    ) % {"inviter": mask_email(inviter.email), "bonus": format_bytes(settings.WELCOME_BONUS_BYTES)}


def invite_sent_message(*, email: str) -> str:
    return _("Invite sent to %(email)s.") % {"email": email.strip().lower()}
