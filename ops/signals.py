"""Celery signal handlers: a failed task is counted (ops.metrics exports the count), and a
task's log lines carry its id as their request id."""

from __future__ import annotations

import logging

from celery.signals import task_failure, task_postrun, task_prerun

from ops import request_id
from ops.services import task_failure_count

logger = logging.getLogger(__name__)


@task_prerun.connect
def _task_started(task_id: str | None = None, **_kwargs) -> None:
    request_id.current.set(task_id or "")


@task_postrun.connect
def _task_ended(**_kwargs) -> None:
    request_id.current.set("")


@task_failure.connect
def _task_failed(sender=None, **_kwargs) -> None:
    name = getattr(sender, "name", None) or "unknown"
    try:
        task_failure_count(task=name)
    except Exception:  # the database may be what failed the task: never fail the failure
        logger.exception("could not count the failure of %s", name)
