"""What the service knows about one user, as one JSON-ready dict (issue 19: the right of
access). Every query is scoped to that user; another user's data never appears, and secrets
(password hash, token digests, TOTP keys, recovery codes) are never exported."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accelerator.models import RetiredLabel, Tenant
from accelerator.selectors import mirror_url
from accounts.addresses import mask_email
from accounts.models import Invite, InviteEmail, User
from api.models import PersonalAccessToken
from dashboard.models import StaffAction
from quota.models import Grant, UsageBucket

EXPORT_VERSION = 1
SECTIONS = (
    "account",
    "accelerator",
    "usage_daily",
    "grants",
    "invites_sent",
    "invite_emails",
    "invite_received",
    "api_tokens",
    "staff_actions",
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _account(user: User) -> dict[str, Any]:
    addresses = EmailAddress.objects.filter(user=user).order_by("-primary", "email")
    return {
        "id": user.pk,
        "email": user.email,
        "email_addresses": [
            {"email": a.email, "verified": a.verified, "primary": a.primary} for a in addresses
        ],
        "date_joined": _iso(user.date_joined),
        "last_login": _iso(user.last_login),
        "language": user.language,
        "signup_ip": user.signup_ip,
        "two_factor": sorted(
            Authenticator.objects.filter(user=user).values_list("type", flat=True)
        ),
    }


def _accelerator(tenant: Tenant | None) -> dict[str, Any] | None:
    if tenant is None:
        return None
    retired = RetiredLabel.objects.filter(tenant=tenant).order_by("retired_at", "id")
    return {
        "label": tenant.label,
        "mirror_url": mirror_url(label=tenant.label),
        "state": tenant.state,
        "suspended_reason": tenant.suspended_reason,
        "created_at": _iso(tenant.created_at),
        "retired_labels": [{"label": r.label, "retired_at": _iso(r.retired_at)} for r in retired],
    }


def _usage_daily(tenant: Tenant | None) -> list[dict[str, Any]]:
    if tenant is None:
        return []
    rows = (
        UsageBucket.objects.filter(tenant=tenant)
        .annotate(day=TruncDate("hour", tzinfo=UTC))
        .values("day")
        .annotate(b=Sum("bytes"), r=Sum("requests"), h=Sum("cache_hits"))
        .order_by("day")
    )
    return [
        {
            "day": row["day"].isoformat(),
            "bytes": row["b"],
            "requests": row["r"],
            "cache_hits": row["h"],
        }
        for row in rows
    ]


def _grants(tenant: Tenant | None) -> list[dict[str, Any]]:
    if tenant is None:
        return []
    grants = Grant.objects.filter(tenant=tenant).order_by("created_at", "id")
    return [
        {
            "kind": g.kind,
            "bytes": g.bytes,
            "created_at": _iso(g.created_at),
            "expires_at": _iso(g.expires_at),
            "note": g.note,
        }
        for g in grants
    ]


def _invite(invite: Invite, other: User | None) -> dict[str, Any]:
    return {
        # The other person's address, masked: it is their data, not the reader's.
        "other": mask_email(other.email) if other is not None else None,
        "created_at": _iso(invite.created_at),
        "status": invite.status,
        "credited_at": _iso(invite.credited_at),
        "inviter_bytes": invite.inviter_bytes,
        "invitee_bytes": invite.invitee_bytes,
    }


def account_export(*, user: User) -> dict[str, Any]:
    """Everything about `user`, in the sections of SECTIONS (a missing accelerator is null)."""
    tenant = Tenant.objects.filter(user=user).first()
    sent = Invite.objects.filter(inviter=user).select_related("invitee").order_by("created_at")
    received = Invite.objects.filter(invitee=user).select_related("inviter").first()
    emails = InviteEmail.objects.filter(inviter=user).order_by("sent_at", "id")
    tokens = PersonalAccessToken.objects.filter(user=user).order_by("created_at", "id")
    actions = (
        StaffAction.objects.filter(tenant=tenant).order_by("created_at", "id")
        if tenant is not None
        else StaffAction.objects.none()
    )
    return {
        "export_version": EXPORT_VERSION,
        "exported_at": timezone.now().isoformat(),
        "account": _account(user),
        "accelerator": _accelerator(tenant),
        "usage_daily": _usage_daily(tenant),
        "grants": _grants(tenant),
        "invites_sent": [_invite(i, i.invitee) for i in sent],
        # The addresses this user typed into the invite form: their own words.
        "invite_emails": [
            {"email": e.email, "sent_at": _iso(e.sent_at), "outcome": e.outcome} for e in emails
        ],
        "invite_received": _invite(received, received.inviter) if received else None,
        "api_tokens": [
            {
                "name": t.name,
                "prefix": t.prefix,
                "created_at": _iso(t.created_at),
                "expires_at": _iso(t.expires_at),
                "last_used_at": _iso(t.last_used_at),
                "revoked_at": _iso(t.revoked_at),
            }
            for t in tokens
        ],
        # What staff did about the account and why; which staff member is theirs to know.
        "staff_actions": [
            {
                "action": a.kind,
                "reason": a.reason,
                "created_at": _iso(a.created_at),
                "detail": a.detail,
            }
            for a in actions
        ],
    }
