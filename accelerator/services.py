"""Writes to tenants. Every change the gate must learn bumps Tenant.updated_at."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import ngettext

from accelerator.labels import new_label
from accelerator.models import RetiredLabel, Tenant
from accelerator.sql import ids_in
from accounts.models import User

_LABEL_ATTEMPTS = 8


def _unused_label() -> str:
    for _ in range(_LABEL_ATTEMPTS):
        label = new_label()
        if not (
            Tenant.objects.filter(label=label).exists()
            or RetiredLabel.objects.filter(label=label).exists()
        ):
            return label
    raise RuntimeError("could not find an unused mirror label")  # 60 bits: practically never


def tenant_start(*, user: User) -> Tenant:
    """The user's tenant, created on the first call. Idempotent: a second call returns it."""
    existing = Tenant.objects.filter(user=user).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return Tenant.objects.create(user=user, label=_unused_label())
    except IntegrityError:
        # A concurrent click created it first (user is unique).
        return Tenant.objects.get(user=user)


class RotationLimited(Exception):
    """The tenant rotated ROTATE_PER_DAY times in the last 24 hours."""

    def __init__(self) -> None:
        self.message = ngettext(
            "You can rotate your address %(n)d time in 24 hours. Try again later.",
            "You can rotate your address %(n)d times in 24 hours. Try again later.",
            settings.ROTATE_PER_DAY,
        ) % {"n": settings.ROTATE_PER_DAY}
        super().__init__(str(self.message))


@transaction.atomic
def tenant_rotate(*, tenant: Tenant, limited: bool = True) -> Tenant:
    """Issue a new label and retire the old one at once; the old label is never reissued.

    The old label's traffic stays the tenant's (ingest.labels), so rotating is no way around
    the meter; still, each rotation is a label the edge and the ledger keep for good, so a
    user may rotate at most ROTATE_PER_DAY times in any 24 hours (RotationLimited). The
    RetiredLabel rows are the record of a user's rotations. Staff rotations (abuse handling,
    audited in dashboard) pass ``limited=False``. The count is taken under the tenant's row
    lock, so parallel requests cannot pass the limit together.
    """
    locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if limited:
        since = timezone.now() - timedelta(days=1)
        recent = RetiredLabel.objects.filter(tenant=locked, retired_at__gt=since).count()
        if recent >= settings.ROTATE_PER_DAY:
            raise RotationLimited
    RetiredLabel.objects.create(label=locked.label, tenant=locked)
    locked.label = _unused_label()
    locked.save(update_fields=["label", "updated_at"])
    return locked


def tenant_suspend(*, tenant: Tenant, reason: str) -> Tenant:
    tenant.state = Tenant.State.SUSPENDED
    tenant.suspended_reason = reason
    tenant.save(update_fields=["state", "suspended_reason", "updated_at"])
    return tenant


def tenant_resume(*, tenant: Tenant) -> Tenant:
    tenant.state = Tenant.State.ACTIVE
    tenant.suspended_reason = ""
    tenant.save(update_fields=["state", "suspended_reason", "updated_at"])
    return tenant


def tenant_mark_exhausted(*, tenant_id: int, at: datetime | None = None) -> bool:
    """Mark a tenant exhausted from `at` (now by default). Idempotent: keeps the first time.

    Returns True when the state changed.
    """
    return bool(
        Tenant.objects.filter(pk=tenant_id, exhausted_at__isnull=True).update(
            exhausted_at=at or timezone.now(), updated_at=timezone.now()
        )
    )


def tenant_clear_exhausted(*, tenant_id: int) -> bool:
    """Let an exhausted tenant pull again (a grant arrived or the month turned). Idempotent."""
    return bool(
        Tenant.objects.filter(pk=tenant_id, exhausted_at__isnull=False).update(
            exhausted_at=None, updated_at=timezone.now()
        )
    )


def tenant_mark_low(*, tenant_id: int, at: datetime | None = None) -> bool:
    """Mark a tenant near the end of its allowance from `at`. Idempotent: keeps the first time."""
    return bool(
        Tenant.objects.filter(pk=tenant_id, low_at__isnull=True).update(
            low_at=at or timezone.now(), updated_at=timezone.now()
        )
    )


def tenant_clear_low(*, tenant_id: int) -> bool:
    """The tenant has room again (a grant arrived or the month turned). Idempotent."""
    return bool(
        Tenant.objects.filter(pk=tenant_id, low_at__isnull=False).update(
            low_at=None, updated_at=timezone.now()
        )
    )


def tenants_set_usage_warnings(*, warnings: Mapping[int, tuple[int | None, int | None]]) -> None:
    """What the edge's Warning header says of the month, per tenant id: (used, allowance), or
    (None, None) for no warning. The caller passes changes only (it holds the rows' locks), so
    the edge's map, and nginx's reload, change only when a text does. PostgreSQL: one
    statement over one JSON parameter (bulk_update's CASE per row took seconds for 10,000)."""
    if not warnings:
        return
    now = timezone.now()
    if connection.vendor != "postgresql":
        Tenant.objects.bulk_update(
            [
                Tenant(pk=pk, warn_used=used, warn_allowance=allowance, updated_at=now)
                for pk, (used, allowance) in sorted(warnings.items())
            ],
            ["warn_used", "warn_allowance", "updated_at"],
            batch_size=500,
        )
        return
    table = Tenant._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS t SET warn_used = (e->>1)::bigint, "
            "warn_allowance = (e->>2)::bigint, updated_at = %s "
            "FROM jsonb_array_elements(%s::jsonb) AS e WHERE t.id = (e->>0)::bigint",
            [now, json.dumps([[pk, u, a] for pk, (u, a) in sorted(warnings.items())])],
        )


def tenants_set_quota_states(
    *,
    at: datetime,
    mark_exhausted: Sequence[int] = (),
    clear_exhausted: Sequence[int] = (),
    mark_low: Sequence[int] = (),
    clear_low: Sequence[int] = (),
) -> None:
    """tenant_mark_exhausted and its siblings for many tenants: one statement per change, with
    the same idempotence (a first time is kept; clearing a clear state changes nothing)."""
    now = timezone.now()
    changes = (
        (mark_exhausted, {"exhausted_at__isnull": True}, {"exhausted_at": at}),
        (clear_exhausted, {"exhausted_at__isnull": False}, {"exhausted_at": None}),
        (mark_low, {"low_at__isnull": True}, {"low_at": at}),
        (clear_low, {"low_at__isnull": False}, {"low_at": None}),
    )
    for ids, where, values in changes:
        if ids:
            Tenant.objects.filter(pk__in=ids_in(ids), **where).update(**values, updated_at=now)
