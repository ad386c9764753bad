"""Celery tasks of the ledger: thin, idempotent, JSON arguments, acks_late, time limits.

The threshold email's task is in quota/notices.py (enforcement queues it; see there why).
"""

from __future__ import annotations

import logging

from celery import shared_task

from quota import settlement

log = logging.getLogger(__name__)


@shared_task(acks_late=True, soft_time_limit=240, time_limit=300)
def ledger_reconcile() -> dict:
    """The periodic backstop (twin: `manage.py ledger_reconcile`)."""
    result = settlement.ledger_reconcile()
    log.info("ledger reconcile: %s", result)
    return result.__dict__


@shared_task(name="quota.tasks.usage_settle", acks_late=True, soft_time_limit=240, time_limit=300)
def usage_settle(tenant_ids: list[int]) -> dict:
    """Enforcement, threshold emails and invite credits for tenants that got usage, sent by an
    edge's ingestion (ACCELERATOR_ROLE=edge, whose database role may not do them) to the
    control plane's queue. Idempotent."""
    ids = sorted({int(i) for i in tenant_ids})[:100_000]
    settlement.usage_after_batch(tenant_ids=ids)
    return {"tenants": len(ids)}
