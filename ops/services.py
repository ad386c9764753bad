"""Writes of the ops app: counting a Celery task's failure."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from ops.models import TaskFailure


def task_failure_count(*, task: str) -> None:
    now = timezone.now()
    task = task[:200]
    if TaskFailure.objects.filter(task=task).update(count=F("count") + 1, last_failed_at=now):
        return
    try:
        with transaction.atomic():
            TaskFailure.objects.create(task=task, count=1, last_failed_at=now)
    except IntegrityError:  # another worker created it first
        TaskFailure.objects.filter(task=task).update(count=F("count") + 1, last_failed_at=now)
