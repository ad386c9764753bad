"""Celery tasks of the ledger: thin, idempotent, JSON arguments, acks_late, time limits."""

from __future__ import annotations

import logging

from celery import shared_task

from quota import ledger, notices

log = logging.getLogger(__name__)


@shared_task(acks_late=True, soft_time_limit=30, time_limit=60, bind=True, max_retries=5)
def quota_notice_send(self, notice_id: int) -> None:
    """Send one threshold email. Runs at most one send per notice row (compare-and-set claim)."""
    try:
        notices.notice_send(notice_id=notice_id)
    except notices.NoticeSendFailed as exc:
        raise self.retry(exc=exc, countdown=60) from exc


@shared_task(acks_late=True, soft_time_limit=240, time_limit=300)
def ledger_reconcile() -> dict:
    """The periodic backstop (twin: `manage.py ledger_reconcile`)."""
    result = ledger.ledger_reconcile()
    log.info("ledger reconcile: %s", result)
    return result.__dict__
