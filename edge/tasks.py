"""Celery tasks of the edge app. Thin: each calls one function and can run twice."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from edge.gate_sync import gate_sync

logger = logging.getLogger(__name__)


@shared_task(
    name="edge.tasks.edge_gate_sync",
    acks_late=True,
    ignore_result=True,
    time_limit=30,
    soft_time_limit=20,
)
def edge_gate_sync(edge: str | None = None) -> dict:
    """Render the gate map for this edge and reload nginx if it changed. Idempotent.

    Beat runs it every EDGE_GATE_SYNC_SECONDS on the machine of the edge (the map file and the
    nginx pid are local). With EDGES, beat names the edge and sends it to that edge's queue;
    a worker of another edge refuses it. Twin: `manage.py edge_sync`.
    """
    if edge and edge != settings.EDGE_NAME:
        logger.error("gate sync for edge %r refused by the worker of %r", edge, settings.EDGE_NAME)
        return {"edge": edge, "refused": f"this worker serves edge {settings.EDGE_NAME!r}"}
    result = gate_sync()
    return {
        "tenants": result.tenants,
        "changed": result.changed,
        "reloaded": result.reloaded,
        "pending": result.pending,
    }
