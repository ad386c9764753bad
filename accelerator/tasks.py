"""Celery tasks of the accelerator app. Thin: each calls one function and can run twice."""

from __future__ import annotations

from celery import shared_task

from accelerator.edge import gate_sync


@shared_task(
    name="accelerator.tasks.edge_gate_sync",
    acks_late=True,
    ignore_result=True,
    time_limit=30,
    soft_time_limit=20,
)
def edge_gate_sync() -> dict:
    """Render the gate map for this edge and reload nginx if it changed. Idempotent.

    Beat runs it every EDGE_GATE_SYNC_SECONDS on the machine of the edge (the map file and the
    nginx pid are local). Twin: `manage.py edge_sync`.
    """
    result = gate_sync()
    return {"tenants": result.tenants, "changed": result.changed, "reloaded": result.reloaded}
