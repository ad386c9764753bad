"""Operations: metrics for Prometheus, health endpoints, request ids and JSON logs."""

from __future__ import annotations

from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"

    def ready(self) -> None:
        from ops import signals  # noqa: F401  (connects the Celery signal handlers)
