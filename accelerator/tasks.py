"""Celery tasks of the accelerator app: thin, idempotent, JSON arguments."""

from __future__ import annotations

from celery import shared_task

from accelerator import refusals


@shared_task(acks_late=True, soft_time_limit=30, time_limit=60, bind=True, max_retries=5)
def refusal_notice_send(self, tenant_id: int) -> None:
    """At most one refusal email a day per tenant (the claim is in the database)."""
    try:
        refusals.refusal_notice_send(tenant_id=tenant_id)
    except refusals.RefusalSendFailed as exc:
        raise self.retry(exc=exc, countdown=60) from exc


@shared_task(acks_late=True, soft_time_limit=300, time_limit=360)
def refusal_notices_send(tenant_ids: list[int]) -> int:
    """A batch's refused tenants, in one message (a batch can refuse thousands). Each one gets
    at most one email a day; a failed send is retried alone."""
    sent = 0
    for tenant_id in tenant_ids:
        try:
            sent += refusals.refusal_notice_send(tenant_id=tenant_id)
        except refusals.RefusalSendFailed:
            refusal_notice_send.apply_async((tenant_id,), countdown=60)
    return sent
