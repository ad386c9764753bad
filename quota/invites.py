"""The one-time invite credit: the grants an invite earns, once, when it is due, and the checks
that keep it for real new users (issue 13: one mailbox, one account; real use; risk signals).

accounts records who invited whom (accounts/services.py); this module pays for it through
quota/grants.py. The bytes and limits come from settings.

Rules:
- Due when the invitee has a verified email address, the account is INVITE_MIN_AGE_SECONDS
  old, and its accelerator pulled INVITE_MIN_USAGE_BYTES in total (a ping is not use).
- Once due it is decided once:
  - void (nothing paid, reason `disposable_domain`) when the invitee's address is at a
    throwaway-mail domain (accounts/addresses.py);
  - held for staff (reason `same_ip`, `same_network` or `burst`) when the invitee signed up
    from the inviter's sign-up IP or its network (/24 for IPv4, /64 for IPv6), or more than
    INVITE_HOLD_BURST invitees of the inviter signed up within one hour; staff approve it
    (paid as below, once) or reject it (nothing paid);
  - else credited: WELCOME_BONUS_BYTES to the invitee (none when an erased account of the
    same mailbox had one, accounts.ErasedMailbox), and INVITE_BONUS_BYTES to the inviter
    while the inviter has fewer than INVITE_CAP credited invites (past the cap the invitee
    still gets the welcome bonus; the inviter gets nothing more, and nothing while deactivated
    or suspended). An inviter without an accelerator gets one started to hold the bonus.
- It is checked after each ingested batch (quota/settlement.py), when the invitee confirms an
  address (quota/receivers.py), and by the reconcile backstop, which also finds invites that
  became due by age alone.
"""

from __future__ import annotations

import ipaddress
import logging
from datetime import datetime, timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from accelerator.models import Tenant
from accelerator.services import tenant_start
from accounts.addresses import email_domain_blocked, mask_email
from accounts.language import language_for_user
from accounts.models import Invite, User
from accounts.selectors import mailbox_was_welcomed
from quota.errors import LedgerError
from quota.grants import grant_create
from quota.models import Grant, UsageMonth

log = logging.getLogger(__name__)


SAME_IP = "same_ip"
SAME_NETWORK = "same_network"
BURST = "burst"
DISPOSABLE = "disposable_domain"


def _network(ip: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 64
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


def _same_source(a: str | None, b: str | None) -> str:
    """SAME_IP, SAME_NETWORK or '' for two sign-up addresses (unknown: no signal)."""
    if not a or not b:
        return ""
    if ipaddress.ip_address(a) == ipaddress.ip_address(b):
        return SAME_IP
    return SAME_NETWORK if _network(a) == _network(b) else ""


def _burst(invite: Invite) -> bool:
    """More than INVITE_HOLD_BURST invitees of one inviter signed up within some hour that
    includes this one."""
    if invite.inviter_id is None:
        return False
    hour = timedelta(hours=1)
    times = sorted(
        Invite.objects.filter(
            inviter_id=invite.inviter_id,
            created_at__gte=invite.created_at - hour,
            created_at__lte=invite.created_at + hour,
        ).values_list("created_at", flat=True)
    )
    limit = settings.INVITE_HOLD_BURST
    for i, start in enumerate(times):
        if start > invite.created_at:
            break
        inside = [t for t in times[i:] if t <= start + hour]
        if len(inside) > limit and inside[-1] >= invite.created_at:
            return True
    return False


def invite_hold_reason(*, invite: Invite) -> str:
    """Why a due credit goes to staff instead of being paid, or ''."""
    inviter_ip = invite.inviter.signup_ip if invite.inviter_id else None
    same = _same_source(invite.invitee.signup_ip, inviter_ip)
    if same:
        return same
    return BURST if _burst(invite) else ""


def invitee_usage(*, tenant: Tenant) -> int:
    """All the bytes the tenant ever pulled (the monthly rollup, one row per month)."""
    return UsageMonth.objects.filter(tenant=tenant).aggregate(b=Sum("bytes"))["b"] or 0


def _due(*, invite: Invite, now: datetime) -> Tenant | None:
    """The invitee's tenant when the credit is due (verified, old enough, real use)."""
    invitee = invite.invitee
    if not invitee.is_active:
        # A deleted account's invite waits: an undo brings it back, the erasure never pays it.
        return None
    if invitee.date_joined > now - timedelta(seconds=settings.INVITE_MIN_AGE_SECONDS):
        return None
    if not EmailAddress.objects.filter(user_id=invitee.pk, verified=True).exists():
        return None
    tenant = Tenant.objects.filter(user_id=invitee.pk).first()
    if tenant is None or invitee_usage(tenant=tenant) < settings.INVITE_MIN_USAGE_BYTES:
        return None
    return tenant


def _decide(invite: Invite, *, status: str, reason: str, now: datetime) -> None:
    invite.status, invite.reason, invite.decided_at = status, reason, now
    invite.save(update_fields=["status", "reason", "decided_at"])


def invite_credit(*, invitee_id: int, now: datetime | None = None) -> bool:
    """Decide the invite of `invitee_id` if it is due: pay it, hold it or void it. Exactly
    once; safe from two workers.

    Returns True when this call credited it.
    """
    now = now or timezone.now()
    with transaction.atomic():
        invite = (
            Invite.objects.select_for_update(of=("self",))
            .select_related("invitee", "inviter")
            .filter(invitee_id=invitee_id, status=Invite.Status.PENDING)
            .first()
        )
        if invite is None:
            return False
        tenant = _due(invite=invite, now=now)
        if tenant is None:
            return False
        if email_domain_blocked(invite.invitee.email):
            _decide(invite, status=Invite.Status.VOID, reason=DISPOSABLE, now=now)
            log.info("invite %s earns nothing: %s", invite.pk, DISPOSABLE)
            return False
        reason = invite_hold_reason(invite=invite)
        if reason:
            _decide(invite, status=Invite.Status.HELD, reason=reason, now=now)
            log.info("invite %s held for staff: %s", invite.pk, reason)
            return False
        _pay(invite=invite, tenant=tenant, now=now)
    return True


def invite_hold_approve(*, invite_id: int, now: datetime | None = None) -> Invite:
    """Staff approve a held credit: paid now, once. Approving it again pays nothing more."""
    now = now or timezone.now()
    with transaction.atomic():
        invite = (
            Invite.objects.select_for_update(of=("self",))
            .select_related("invitee", "inviter")
            .get(pk=invite_id)
        )
        if invite.status == Invite.Status.CREDITED:
            return invite
        if invite.status != Invite.Status.HELD:
            raise LedgerError(f"invite {invite.pk} is {invite.status}, not held")
        tenant = tenant_start(user=invite.invitee)
        _pay(invite=invite, tenant=tenant, now=now)
    return invite


def invite_hold_reject(*, invite_id: int, now: datetime | None = None) -> Invite:
    """Staff reject a held credit: nothing is paid, now or later."""
    now = now or timezone.now()
    with transaction.atomic():
        invite = Invite.objects.select_for_update().get(pk=invite_id)
        if invite.status == Invite.Status.REJECTED:
            return invite
        if invite.status != Invite.Status.HELD:
            raise LedgerError(f"invite {invite.pk} is {invite.status}, not held")
        _decide(invite, status=Invite.Status.REJECTED, reason=invite.reason, now=now)
    return invite


def _pay(*, invite: Invite, tenant: Tenant, now: datetime) -> None:
    """The grants of a credited invite (inside the caller's transaction, invite row locked)."""
    inviter_bytes = 0
    inviter = None
    if invite.inviter_id is not None:
        # The inviter's row serializes credits of one inviter, so the cap holds.
        inviter = User.objects.select_for_update(no_key=True).filter(pk=invite.inviter_id).first()
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
    # One welcome bonus per mailbox: none for a re-sign-up after an erased account had one.
    welcomed = mailbox_was_welcomed(email=invite.invitee.email)
    invitee_bytes = 0 if welcomed else settings.WELCOME_BONUS_BYTES
    invite.status = Invite.Status.CREDITED
    invite.decided_at = invite.decided_at or now
    invite.credited_at = now
    invite.inviter_bytes = inviter_bytes
    invite.invitee_bytes = invitee_bytes
    invite.save(
        update_fields=["status", "decided_at", "credited_at", "inviter_bytes", "invitee_bytes"]
    )
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
    if inviter_bytes > 0 and inviter is not None:
        inviter_tenant = tenant_start(user=inviter)
        with translation.override(language_for_user(inviter)):
            note = str(_("Invite bonus: %(email)s joined") % {"email": mask_email(invitee_email)})
        grant_create(
            tenant=inviter_tenant,
            kind=Grant.Kind.INVITE,
            bytes=inviter_bytes,
            source_key=f"invite:{invite.pk}:inviter",
            note=note,
            now=now,
        )
    log.info("invite %s credited: %s B / %s B", invite.pk, inviter_bytes, invitee_bytes)


def invites_credit_pending(*, now: datetime | None = None, limit: int = 1000) -> int:
    """The backstop: decide pending invites that are due, whether by new usage, a missed
    verification or, with nothing new at all, by the invitee account's age."""
    now = now or timezone.now()
    used = (
        UsageMonth.objects.values("tenant_id")
        .annotate(total=Sum("bytes"))
        .filter(total__gte=settings.INVITE_MIN_USAGE_BYTES)
        .values("tenant_id")
    )
    due = (
        Invite.objects.filter(status=Invite.Status.PENDING)
        .filter(invitee__date_joined__lte=now - timedelta(seconds=settings.INVITE_MIN_AGE_SECONDS))
        .filter(invitee__emailaddress__verified=True)
        .filter(invitee__tenant__in=used)
        .values_list("invitee_id", flat=True)
        .distinct()[:limit]
    )
    return sum(invite_credit(invitee_id=invitee_id, now=now) for invitee_id in list(due))
