"""The edges a control plane serves, and how their periodic work is routed to them.

Pure code, no Django imports: config/settings.py builds EDGES and the beat entries with it.

Why a setting (``EDGES=east,west``) and not a model: an edge is infrastructure, deployed with
its own machine, unit files and certificate, and its Celery queue must exist before beat can
send to it. Beat reads its schedule from settings at start (no database-backed scheduler is
installed), so a list kept in the environment next to the other deployment values is the one
place both beat and the dashboard read, and adding an edge is the same act as deploying it.

An edge's files (its access log, its run directory with the gate map and nginx's pid) are
facts of the edge's machine: its own worker reads them from its own EDGE_ACCESS_LOG and
EDGE_RUN_DIR. The control plane only names the edge; the queue is derived from the name.
"""

from __future__ import annotations

import re

EDGE_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
QUEUE_PREFIX = "edge."


class EdgesError(ValueError):
    """EDGES holds a name that cannot be an edge (or one twice)."""


def edges_parse(raw: str) -> list[str]:
    """Edge names from a comma-separated list; empty means one edge (EDGE_NAME), no queues."""
    names = [part.strip() for part in raw.split(",") if part.strip()]
    seen: set[str] = set()
    for name in names:
        if not EDGE_NAME_RE.match(name):
            raise EdgesError(
                f"EDGES: {name!r} is not an edge name (letters, digits, '_', '.', '-'; at most 64)"
            )
        if name in seen:
            raise EdgesError(f"EDGES: {name!r} is listed twice")
        seen.add(name)
    return names


def edge_queue(name: str) -> str:
    """The Celery queue only the worker on edge `name` consumes."""
    return f"{QUEUE_PREFIX}{name}"


def edges_beat_schedule(
    *, edges: list[str], ingest_seconds: int, gate_sync_seconds: int
) -> dict[str, dict]:
    """One ingestion and one gate-sync entry per edge, each sent to that edge's queue.

    The tasks name the edge and nothing else: the worker on the edge knows its log and run
    directory, and refuses a task meant for another edge (see the tasks' guards).
    """
    schedule: dict[str, dict] = {}
    for name in edges:
        queue = edge_queue(name)
        schedule[f"ingest-edge-log:{name}"] = {
            "task": "ingest.tasks.ingest_edge_log",
            "schedule": float(ingest_seconds),
            "kwargs": {"edge": name},
            # A run still queued after a few periods is superseded by a newer one; a stopped
            # edge worker therefore finds no backlog of runs, just the next one.
            "options": {"queue": queue, "expires": float(ingest_seconds * 5)},
        }
        schedule[f"edge-gate-sync:{name}"] = {
            "task": "accelerator.tasks.edge_gate_sync",
            "schedule": float(gate_sync_seconds),
            "kwargs": {"edge": name},
            # As the single-edge entry: superseded when stuck for long, not sooner.
            "options": {"queue": queue, "expires": float(max(10, 5 * gate_sync_seconds))},
        }
    return schedule
