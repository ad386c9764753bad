"""Celery tasks of the edge app. Thin: each calls one function and can run twice."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from edge.allowance import allowance_probe
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


@shared_task(
    name="edge.tasks.upstream_allowance_probe",
    acks_late=True,
    ignore_result=True,
    time_limit=120,
    soft_time_limit=100,
)
def upstream_allowance_probe(edge: str | None = None) -> dict:
    """Read each probed upstream's ratelimit headers from this edge (its own address is what
    the upstream counts). Idempotent. Twin: `manage.py edge_allowance`."""
    if edge and edge != settings.EDGE_NAME:
        logger.error("allowance probe for %r refused by the worker of %r", edge, settings.EDGE_NAME)
        return {"edge": edge, "refused": f"this worker serves edge {settings.EDGE_NAME!r}"}
    rows = allowance_probe()
    return {r.registry: [r.remaining, r.limit] for r in rows}
