from __future__ import annotations

from celery import shared_task

from dashboard import selectors


@shared_task(acks_late=True, time_limit=120, soft_time_limit=100, ignore_result=True)
def dashboard_refresh() -> None:
    """Recompute the dashboard's traffic figures so staff never wait for the scan. Idempotent."""
    selectors.dashboard_traffic(fresh=True)
