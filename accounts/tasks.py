"""Celery tasks of the accounts app: thin, JSON arguments, acks_late, time limits."""

from __future__ import annotations

from celery import shared_task

from accounts import emails


@shared_task(acks_late=True, soft_time_limit=30, time_limit=60, bind=True, max_retries=3)
def invite_email_deliver(
    self, invite_email_id: int, link: str, language: str | None = None
) -> None:
    """Send one recorded invite email. A retry after a failed send sends it once more."""
    try:
        emails.invite_email_render_and_send(
            invite_email_id=invite_email_id, link=link, language=language
        )
    except emails.EmailFailed as exc:
        raise self.retry(exc=exc, countdown=60) from exc
