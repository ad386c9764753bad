"""Reads about accounts and invites: whose mailbox an address is, the invites page and the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from accounts.addresses import email_canonical, mailbox_digest, mask_email
from accounts.models import ErasedMailbox, Invite, InviteEmail, User


def user_for_mailbox(*, email: str) -> User | None:
    """The account of the mailbox `email` delivers to (any alias of it), if there is one."""
    canonical = email_canonical(email)
    return (
        User.objects.filter(email_canonical=canonical).first()
        or User.objects.filter(email__iexact=email.strip()).first()
    )


def mailbox_was_welcomed(*, email: str) -> bool:
    """An erased account of this mailbox (any alias) already had a welcome bonus."""
    return ErasedMailbox.objects.filter(digest=mailbox_digest(email)).exists()


@dataclass(frozen=True)
class InviteeRow:
    email: str  # masked
    signed_up_at: datetime
    verified: bool
    credited_at: datetime | None
    earned: int  # what the inviter got for this invitee


@dataclass(frozen=True)
class InviteStats:
    signed_up: int
    credited: int
    earned: int
    cap: int
    emails_today: int
    emails_per_day: int
    invite_bonus: int
    welcome_bonus: int


def invitees_for_user(*, user: User) -> list[InviteeRow]:
    invites = list(
        Invite.objects.filter(inviter=user).select_related("invitee").order_by("-created_at")
    )
    verified = set(
        EmailAddress.objects.filter(
            user_id__in=[i.invitee_id for i in invites], verified=True
        ).values_list("user_id", flat=True)
    )
    return [
        InviteeRow(
            email=mask_email(i.invitee.email),
            signed_up_at=i.created_at,
            verified=i.invitee_id in verified,
            credited_at=i.credited_at,
            earned=i.inviter_bytes,
        )
        for i in invites
    ]


def invite_emails_for_user(*, user: User, limit: int = 50) -> list[InviteEmail]:
    """The invite emails the user sees as sent: those to an address with an account look the
    same (enumeration); refused attempts are not listed, only counted."""
    shown = [InviteEmail.Outcome.SENT, InviteEmail.Outcome.HAS_ACCOUNT]
    return list(
        InviteEmail.objects.filter(inviter=user, outcome__in=shown).order_by("-sent_at")[:limit]
    )


def invite_stats_for_user(*, user: User, now: datetime | None = None) -> InviteStats:
    now = now or timezone.now()
    invites = Invite.objects.filter(inviter=user)
    credited = invites.filter(credited_at__isnull=False, inviter_bytes__gt=0)
    return InviteStats(
        signed_up=invites.count(),
        credited=credited.count(),
        earned=credited.aggregate(b=Sum("inviter_bytes"))["b"] or 0,
        cap=settings.INVITE_CAP,
        emails_today=InviteEmail.objects.filter(
            inviter=user, sent_at__gt=now - timedelta(days=1)
        ).count(),
        emails_per_day=settings.INVITE_EMAILS_PER_DAY,
        invite_bonus=settings.INVITE_BONUS_BYTES,
        welcome_bonus=settings.WELCOME_BONUS_BYTES,
    )
