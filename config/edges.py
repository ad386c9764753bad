"""The edges a control plane serves (EDGES) and the Celery queue of each.

Pure code, no Django imports: config/settings.py parses EDGES with it, config/beat.py routes
each edge's periodic work to its queue.

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
