"""Grants: the one writer of bonus traffic (append-only, idempotent on a source key).

Who may earn a grant, and how much, is decided by the callers (quota/invites.py, staff
actions); this module checks the values and re-evaluates the tenant at once.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from accelerator.models import Tenant
from quota.enforcement import tenant_enforce
from quota.errors import LedgerError
from quota.models import Grant
from quota.periods import utc

log = logging.getLogger(__name__)


def grant_create(
    *,
    tenant: Tenant | int,
    kind: str,
    bytes: int,  # noqa: A002 - the interface other apps code against
    source_key: str,
    expires_at: datetime | None = None,
    note: str = "",
    created_by=None,
    now: datetime | None = None,
) -> Grant:
    """Grant bonus traffic. Idempotent on `source_key`: a second call with the same key changes
    nothing and returns the first grant. Re-opens an exhausted tenant whose remaining becomes
    positive. Raises LedgerError for values it refuses.
    """
    tenant_id = tenant if isinstance(tenant, int) else tenant.pk
    if kind not in Grant.Kind.values:
        raise LedgerError(f"unknown grant kind {kind!r}")
    if isinstance(bytes, bool) or not isinstance(bytes, int) or bytes <= 0:
        raise LedgerError("a grant must be a positive whole number of bytes")
    if bytes > 10**18:
        raise LedgerError("a grant cannot exceed 1 EB")
    source_key = (source_key or "").strip()
    if not source_key or len(source_key) > 200:
        raise LedgerError("a grant needs a source key of 1 to 200 characters")
    now = utc(now or timezone.now())
    if expires_at is not None and utc(expires_at) <= now:
        raise LedgerError("a grant's expiry must be in the future")

    existing = Grant.objects.filter(source_key=source_key).first()
    if existing is not None:
        return existing
    # Checked here: PostgreSQL checks the foreign key only at commit.
    if not Tenant.objects.filter(pk=tenant_id).exists():
        raise LedgerError("no such tenant")
    try:
        with transaction.atomic():
            grant = Grant.objects.create(
                tenant_id=tenant_id,
                kind=kind,
                bytes=bytes,
                source_key=source_key,
                created_at=now,
                expires_at=expires_at,
                note=note,
                created_by=created_by,
            )
    except IntegrityError:
        # The same key, created concurrently: that grant is the one.
        existing = Grant.objects.filter(source_key=source_key).first()
        if existing is None:
            raise
        return existing
    log.info("grant %s: %s B %s to tenant %s", source_key, bytes, kind, tenant_id)
    tenant_enforce(tenant_id=tenant_id, now=now)
    return grant
