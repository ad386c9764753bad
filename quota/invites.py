"""The one-time invite credit: the grants an invite earns, once, when it is due.

accounts records who invited whom (accounts/services.py); this module pays for it through
quota/grants.py. The bytes come from settings.

Rules:
- Credit, exactly once, when the invitee has a verified email address and a usage bucket with
  bytes > 0: WELCOME_BONUS_BYTES to the invitee, and INVITE_BONUS_BYTES to the inviter while
  the inviter has fewer than INVITE_CAP credited invites (past the cap the invitee still gets
  the welcome bonus; the inviter gets nothing more, and nothing while deactivated or
  suspended). An inviter without an accelerator gets one started to hold the bonus.
- It is checked after each ingested batch (quota/settlement.py), when the invitee confirms an
  address (quota/receivers.py), and by the reconcile backstop.
"""

from __future__ import annotations

import logging
from datetime import datetime

from allauth.account.models import EmailAddress
from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from accelerator.models import Tenant
from accelerator.services import tenant_start
from accounts.language import language_for_user
from accounts.models import Invite, User
from accounts.services import mask_email
from quota.grants import grant_create
from quota.models import Grant, UsageBucket

log = logging.getLogger(__name__)


def invite_credit(*, invitee_id: int, now: datetime | None = None) -> bool:
    """Credit the invite of `invitee_id` if it is due. Exactly once; safe from two workers.

    Returns True when this call credited it.
    """
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
            grant_create(
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
            grant_create(
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
    due = (
        Invite.objects.filter(credited_at__isnull=True)
        .filter(invitee__emailaddress__verified=True)
        .filter(invitee__tenant__in=UsageBucket.objects.filter(bytes__gt=0).values("tenant_id"))
        .values_list("invitee_id", flat=True)
        .distinct()[:limit]
    )
    return sum(invite_credit(invitee_id=invitee_id, now=now) for invitee_id in list(due))
