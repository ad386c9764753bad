"""Erasing a deleted account once its grace period is over (issue 19).

Erased: every email address (the user's, its allauth addresses, the addresses it typed into
the invite form), the password, the sign-up IP, the invite code, the language, two-factor
authenticators and API tokens. The mirror label is retired (never issued again).
Kept, anonymous: the user row (id and dates, with an address that is no one's), the tenant
and its ledger (usage, grants, invite credits), so staff totals and other users' invite
credits stay right; the audit trail of staff actions; and, for a mailbox that had a welcome
bonus, a keyed hash of it (accounts.ErasedMailbox), so signing up again earns no second one.
"""

from __future__ import annotations

import logging
from datetime import datetime

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.db import transaction
from django.utils import timezone

from accelerator.models import Tenant
from accelerator.services import tenant_rotate
from accounts.addresses import mailbox_digest
from accounts.models import AccountDeletion, ErasedMailbox, InviteEmail, User
from api.models import PersonalAccessToken
from quota.models import Grant

log = logging.getLogger(__name__)

ERASED_DOMAIN = "erased.invalid"  # RFC 2606: never delivers


def erased_email(user_id: int) -> str:
    return f"deleted-{user_id}@{ERASED_DOMAIN}"


def _erase(*, user: User, now: datetime) -> None:
    tenant = Tenant.objects.filter(user=user).first()
    if tenant is not None:
        if Grant.objects.filter(tenant=tenant, kind=Grant.Kind.WELCOME).exists():
            addresses = {
                user.email,
                *EmailAddress.objects.filter(user=user).values_list("email", flat=True),
            }
            for address in addresses:
                ErasedMailbox.objects.get_or_create(digest=mailbox_digest(address))
        tenant_rotate(tenant=tenant, limited=False)  # the label is retired for good
        Tenant.objects.filter(pk=tenant.pk).update(suspended_reason="", updated_at=now)
    EmailAddress.objects.filter(user=user).delete()
    InviteEmail.objects.filter(inviter=user).delete()
    Authenticator.objects.filter(user=user).delete()
    PersonalAccessToken.objects.filter(user=user).delete()
    user.email = erased_email(user.pk)
    user.set_unusable_password()
    user.signup_ip = None
    user.invite_code = None
    user.language = ""
    user.is_active = False
    user.last_login = None
    user.save()


def account_erase(*, deletion_id: int, now: datetime | None = None) -> bool:
    """Erase one account whose deletion is due. Idempotent: compare-and-set on the pending
    row, so an undo at the same instant and a second run both leave it as one of them did."""
    now = now or timezone.now()
    with transaction.atomic():
        deletion = (
            AccountDeletion.objects.select_for_update()
            .select_related("user")
            .filter(pk=deletion_id, status=AccountDeletion.Status.PENDING, purge_after__lte=now)
            .first()
        )
        if deletion is None:
            return False
        _erase(user=deletion.user, now=now)
        deletion.status = AccountDeletion.Status.ERASED
        deletion.erased_at = now
        deletion.undo_nonce = ""
        deletion.revoked_token_ids = []
        deletion.save(update_fields=["status", "erased_at", "undo_nonce", "revoked_token_ids"])
    log.info("account %s erased (deletion %s)", deletion.user_id, deletion.pk)
    return True


def accounts_purge_due(*, now: datetime | None = None, limit: int = 500) -> int:
    """Erase every account whose grace period is over; returns how many were erased."""
    now = now or timezone.now()
    due = AccountDeletion.objects.filter(
        status=AccountDeletion.Status.PENDING, purge_after__lte=now
    ).values_list("pk", flat=True)[:limit]
    return sum(account_erase(deletion_id=pk, now=now) for pk in list(due))
