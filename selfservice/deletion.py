"""Deleting an account (issue 19), and undoing it within the grace period.

Rules:
- A deletion deactivates the account at once: no login (Django refuses inactive users, and
  their sessions end), every live API token revoked, and the mirror label out of the gate map
  (accelerator.gate), so each edge refuses it at its next gate sync.
- The owner gets an email with an undo link, valid for ACCOUNT_DELETE_GRACE_DAYS; undoing
  restores the account as it was (the same label, the tokens the deletion revoked).
- After the grace period selfservice/erasure.py erases the personal data; the ledger's rows
  stay, anonymous, so totals and other users' invite credits do not change.
- Staff can run the same deletion; it is audited (dashboard.StaffAction).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.utils import timezone

from accelerator.models import Tenant
from accelerator.services import tenant_start
from accounts.models import AccountDeletion, User
from api.models import PersonalAccessToken
from api.services import token_revoke_all
from dashboard.models import StaffAction
from selfservice.emails import UNDO_SALT
from selfservice.tasks import deletion_email_deliver


class UndoRefused(Exception):
    """The undo link is malformed, forged, from an earlier deletion, or too late."""


@transaction.atomic
def account_delete(
    *, user: User, requested_by: User | None = None, now: datetime | None = None
) -> AccountDeletion:
    """Deactivate `user` now and schedule the erasure. Idempotent: an account already
    pending (or erased) keeps its deletion as it was."""
    now = now or timezone.now()
    locked = User.objects.select_for_update().get(pk=user.pk)
    existing = AccountDeletion.objects.filter(user=locked).first()
    if existing is not None and existing.status != AccountDeletion.Status.UNDONE:
        return existing
    values = {
        "status": AccountDeletion.Status.PENDING,
        "requested_at": now,
        "purge_after": now + timedelta(days=settings.ACCOUNT_DELETE_GRACE_DAYS),
        "requested_by": requested_by,
        "undo_nonce": secrets.token_urlsafe(32),
        "revoked_token_ids": token_revoke_all(user=locked, now=now),
        "undone_at": None,
    }
    deletion, _created = AccountDeletion.objects.update_or_create(user=locked, defaults=values)
    User.objects.filter(pk=locked.pk).update(is_active=False)
    # The gate map drops the label at the next sync (gate_table skips inactive accounts).
    Tenant.objects.filter(user=locked).update(updated_at=now)
    user.is_active = False
    transaction.on_commit(lambda: deletion_email_deliver.delay(deletion.pk))
    return deletion


def _deletion_for_token(token: str) -> AccountDeletion:
    max_age = timedelta(days=settings.ACCOUNT_DELETE_GRACE_DAYS)
    try:
        pk, nonce = signing.loads(token, salt=UNDO_SALT, max_age=max_age)
    except (signing.BadSignature, ValueError, TypeError):
        raise UndoRefused from None
    if not isinstance(pk, int) or not isinstance(nonce, str):
        raise UndoRefused
    deletion = AccountDeletion.objects.select_related("user").filter(pk=pk).first()
    if deletion is None or not secrets.compare_digest(deletion.undo_nonce, nonce):
        raise UndoRefused
    return deletion


def deletion_for_undo(*, token: str, now: datetime | None = None) -> AccountDeletion:
    """The pending deletion an undo link names, or UndoRefused."""
    now = now or timezone.now()
    deletion = _deletion_for_token(token)
    if deletion.status != AccountDeletion.Status.PENDING or deletion.purge_after <= now:
        raise UndoRefused
    return deletion


@transaction.atomic
def account_undo_delete(*, token: str, now: datetime | None = None) -> User:
    """Restore the account an undo link names: active, its label served again at the next
    gate sync, the tokens the deletion revoked live again (those not expired since)."""
    now = now or timezone.now()
    found = deletion_for_undo(token=token, now=now)
    deletion = AccountDeletion.objects.select_for_update().get(pk=found.pk)
    # Compare-and-set against the purge: only a still-pending deletion is undone.
    if deletion.status != AccountDeletion.Status.PENDING or deletion.purge_after <= now:
        raise UndoRefused
    deletion.status = AccountDeletion.Status.UNDONE
    deletion.undone_at = now
    deletion.undo_nonce = secrets.token_urlsafe(32)  # the link works once
    deletion.save(update_fields=["status", "undone_at", "undo_nonce"])
    User.objects.filter(pk=deletion.user_id).update(is_active=True)
    PersonalAccessToken.objects.filter(
        user_id=deletion.user_id, pk__in=deletion.revoked_token_ids, revoked_at__isnull=False
    ).update(revoked_at=None)
    Tenant.objects.filter(user_id=deletion.user_id).update(updated_at=now)
    return User.objects.get(pk=deletion.user_id)


@transaction.atomic
def staff_account_delete(*, actor: User, user: User, reason: str) -> StaffAction:
    """The same deletion, run by staff and recorded in the audit trail (once per deletion)."""
    deletion = account_delete(user=user, requested_by=actor)
    tenant = tenant_start(user=user)  # the audit trail is per tenant
    earlier = StaffAction.objects.filter(
        kind=StaffAction.Kind.DELETE_ACCOUNT, detail__deletion_requested_at=_iso(deletion)
    ).filter(tenant=tenant)
    if earlier.exists():
        return earlier.first()  # type: ignore[return-value]
    return StaffAction.objects.create(
        actor=actor,
        tenant=tenant,
        kind=StaffAction.Kind.DELETE_ACCOUNT,
        reason=reason,
        detail={
            "user": user.pk,
            "deletion_requested_at": _iso(deletion),
            "purge_after": deletion.purge_after.isoformat(),
        },
    )


def _iso(deletion: AccountDeletion) -> str:
    return deletion.requested_at.isoformat()
