"""Celery tasks of the account page: thin, JSON arguments, acks_late, time limits."""

from __future__ import annotations

from celery import shared_task

from selfservice import emails, erasure


@shared_task(acks_late=True, soft_time_limit=30, time_limit=60, bind=True, max_retries=3)
def deletion_email_deliver(self, deletion_id: int) -> None:
    """Mail the deletion notice with its undo link (nothing once undone or erased)."""
    try:
        emails.deletion_email_send(deletion_id=deletion_id)
    except OSError as exc:  # SMTP unreachable: try again
        raise self.retry(exc=exc, countdown=60) from exc


@shared_task(acks_late=True, soft_time_limit=240, time_limit=300)
def account_purge() -> int:
    """Erase accounts whose deletion grace period is over. Twin: manage.py account_purge."""
    return erasure.accounts_purge_due()
