"""Counts that must survive processes: Celery task failures (workers come and go, and a
Prometheus counter in one worker process would die with it)."""

from __future__ import annotations

from django.db import models


class TaskFailure(models.Model):
    """Failures per Celery task name, since the first one."""

    task = models.CharField(max_length=200, unique=True)
    count = models.BigIntegerField(default=0)
    last_failed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.task}: {self.count}"
