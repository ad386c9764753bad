"""Celery task of ingestion. Thin: parse arguments, call the service, report plain values."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from ingest.services import ingest_edge

log = logging.getLogger(__name__)


@shared_task(
    name="ingest.tasks.ingest_edge_log",
    acks_late=True,
    ignore_result=True,
    # A run stops starting batches after INGEST_RUN_SECONDS; the limits only catch a hang.
    # A killed run loses nothing: its open batch rolls back and is read again.
    soft_time_limit=120,
    time_limit=150,
)
def ingest_edge_log(edge: str | None = None, **unexpected: object) -> dict:
    """Ingest this edge's access log (EDGE_ACCESS_LOG) from its saved position. Idempotent; a
    second worker on the same edge finds it busy and returns at once. Twin: `manage.py
    ingest_logs`.

    The message names the edge and nothing else: a file path from the broker would let whoever
    can publish there make the worker read (and charge tenants from) any file it can open.
    """
    if unexpected:
        log.error("ingest task refused: unexpected arguments %s", sorted(unexpected)[:5])
        return {"edge": edge, "refused": "the ingest task takes only the edge's name"}
    if edge and edge != settings.EDGE_NAME:
        # Sent to edge.<edge> (EDGES) but taken by another edge's worker: its log is not
        # that edge's, so reading it would charge the wrong edge. Refuse, visibly.
        log.error("ingest for edge %r refused by the worker of edge %r", edge, settings.EDGE_NAME)
        return {"edge": edge, "refused": f"this worker serves edge {settings.EDGE_NAME!r}"}
    report = ingest_edge(edge=settings.EDGE_NAME, path=str(settings.EDGE_ACCESS_LOG))
    if report.lines or report.malformed:
        log.info(
            "ingest %s: %s lines, %s malformed, %s unknown in %.2fs (%s batches parsed in parts)",
            report.edge,
            report.lines,
            report.malformed,
            report.unknown,
            report.seconds,
            report.parsed_in_parts,
        )
    return {
        "edge": report.edge,
        "busy": report.busy,
        "lines": report.lines,
        "malformed": report.malformed,
        "unknown": report.unknown,
        "bytes_behind": report.bytes_behind,
    }
