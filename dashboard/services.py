"""Staff actions. Each calls the owning service and records who, when and why, atomically."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from django.db import transaction

from accelerator import services as accelerator_services
from accelerator.models import Tenant
from accelerator.services import tenant_start
from accounts.models import Invite, User
from dashboard.models import StaffAction
from quota.grants import grant_create
from quota.invites import invite_hold_approve, invite_hold_reject
from quota.models import Grant


def _record(*, actor: User, tenant: Tenant, kind: str, reason: str, detail: dict) -> StaffAction:
    return StaffAction.objects.create(
        actor=actor, tenant=tenant, kind=kind, reason=reason, detail=detail
    )


@transaction.atomic
def staff_grant(
    *,
    actor: User,
    tenant: Tenant,
    bytes: int,
    reason: str,
    expires_at: datetime | None = None,
    idempotency_key: str | None = None,
) -> StaffAction:
    """Grant bonus traffic. With the same idempotency key, a repeat grants nothing more."""
    # The tenant is part of the key: the same key sent for another tenant is another grant.
    source_key = f"staff:{tenant.pk}:{idempotency_key or uuid.uuid4().hex}"
    earlier = StaffAction.objects.filter(
        kind=StaffAction.Kind.GRANT, detail__source_key=source_key
    ).first()
    if earlier is not None:
        return earlier
    grant_create(
        tenant=tenant,
        kind=Grant.Kind.STAFF,
        bytes=bytes,
        source_key=source_key,
        expires_at=expires_at,
        note=reason,
        created_by=actor,
    )
    detail = {
        "bytes": bytes,
        "source_key": source_key,
        "expires_at": expires_at.isoformat() if expires_at else None,
    }
    return _record(
        actor=actor, tenant=tenant, kind=StaffAction.Kind.GRANT, reason=reason, detail=detail
    )


@transaction.atomic
def staff_suspend(*, actor: User, tenant: Tenant, reason: str) -> StaffAction:
    accelerator_services.tenant_suspend(tenant=tenant, reason=reason)
    return _record(
        actor=actor, tenant=tenant, kind=StaffAction.Kind.SUSPEND, reason=reason, detail={}
    )


@transaction.atomic
def staff_resume(*, actor: User, tenant: Tenant, reason: str) -> StaffAction:
    accelerator_services.tenant_resume(tenant=tenant)
    return _record(
        actor=actor, tenant=tenant, kind=StaffAction.Kind.RESUME, reason=reason, detail={}
    )


@transaction.atomic
def staff_rotate(*, actor: User, tenant: Tenant, reason: str) -> StaffAction:
    """Rotate a tenant's label (a leak, abuse). Not counted against ROTATE_PER_DAY, which
    limits users: staff must always be able to cut off a leaked address, and every staff
    rotation is in the audit trail with its reason."""
    old = tenant.label
    rotated = accelerator_services.tenant_rotate(tenant=tenant, limited=False)
    tenant.label = rotated.label
    return _record(
        actor=actor,
        tenant=tenant,
        kind=StaffAction.Kind.ROTATE,
        reason=reason,
        detail={"old_label": old, "new_label": rotated.label},
    )


def _invite_detail(invite: Invite) -> dict:
    return {
        "invite": invite.pk,
        "inviter": invite.inviter_id,
        "invitee": invite.invitee_id,
        "hold_reason": invite.reason,
        "bytes": invite.inviter_bytes,
        "invitee_bytes": invite.invitee_bytes,
    }


def staff_invite_approve(*, actor: User, invite: Invite, reason: str) -> StaffAction:
    """Pay a held invite credit. Approving it again pays nothing and returns the first record."""
    return _staff_invite_decide(
        actor=actor,
        invite=invite,
        reason=reason,
        kind=StaffAction.Kind.INVITE_APPROVE,
        decide=invite_hold_approve,
    )


def staff_invite_reject(*, actor: User, invite: Invite, reason: str) -> StaffAction:
    """Refuse a held invite credit: nothing is paid. Rejecting it again records nothing new."""
    return _staff_invite_decide(
        actor=actor,
        invite=invite,
        reason=reason,
        kind=StaffAction.Kind.INVITE_REJECT,
        decide=invite_hold_reject,
    )


@transaction.atomic
def _staff_invite_decide(
    *, actor: User, invite: Invite, reason: str, kind: str, decide: Callable[..., Invite]
) -> StaffAction:
    """One decision on a held credit, audited once: a repeat returns the first record."""
    earlier = StaffAction.objects.filter(kind=kind, detail__invite=invite.pk).first()
    if earlier is not None:
        return earlier
    invite = decide(invite_id=invite.pk)
    return _record(
        actor=actor,
        tenant=tenant_start(user=invite.invitee),
        kind=kind,
        reason=reason,
        detail=_invite_detail(invite),
    )
