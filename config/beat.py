"""The Celery beat schedule: every periodic task, its period and its queue, built in one place.

Pure code, no Django imports: config/settings.py calls beat_schedule() once with its values.
Task names are strings here (settings import no app); each names a task of its app's tasks.py.
"""

from __future__ import annotations

from typing import Any

from config.edges import edge_queue

# One beat entry: task name, schedule (seconds), kwargs and options, as Celery reads them.
Entry = dict[str, Any]


def beat_schedule(
    *,
    edges: list[str],
    edge_name: str,
    ingest_seconds: int,
    ingest_queue: str,
    gate_sync_seconds: int,
    reconcile_seconds: int,
    dashboard_cache_seconds: int,
    allowance_seconds: int = 0,
) -> dict[str, Entry]:
    """The whole schedule. Without edges: one edge (edge_name), its entries on the default
    queue (or ingest_queue); with edges: one ingestion and one gate-sync entry per edge, each
    sent to that edge's queue. The control plane's own work stays on the default queue."""
    schedule: dict[str, Entry] = {
        # The backstop: new month, expired grants, missed batches, missed first usages.
        "ledger-reconcile": {
            "task": "quota.tasks.ledger_reconcile",
            "schedule": float(reconcile_seconds),
            "options": {"expires": float(reconcile_seconds)},
        },
        "dashboard-refresh": {
            "task": "dashboard.tasks.dashboard_refresh",
            "schedule": max(dashboard_cache_seconds // 2, 5),
        },
        # Erase accounts whose deletion grace period is over (days: hourly is prompt enough).
        "account-purge": {"task": "selfservice.tasks.account_purge", "schedule": 3600.0},
    }
    if allowance_seconds > 0:
        # Each edge reads the upstreams' ratelimit headers from its own address (the one they
        # count), so the probe runs on the edge's queue.
        for name in edges or [""]:
            schedule[f"upstream-allowance:{name}" if name else "upstream-allowance"] = {
                "task": "edge.tasks.upstream_allowance_probe",
                "schedule": float(allowance_seconds),
                "kwargs": {"edge": name} if name else {},
                "options": {"expires": float(allowance_seconds)}
                | ({"queue": edge_queue(name)} if name else {}),
            }
    if edges:
        schedule |= _edges_entries(
            edges=edges, ingest_seconds=ingest_seconds, gate_sync_seconds=gate_sync_seconds
        )
        return schedule
    schedule["edge-gate-sync"] = {
        "task": "edge.tasks.edge_gate_sync",
        "schedule": float(gate_sync_seconds),
        # A sync stuck behind other tasks for long is superseded by a later one; not sooner, or
        # a busy worker could drop every one of them.
        "options": {"expires": float(max(10, 5 * gate_sync_seconds))},
    }
    schedule["ingest-edge-log"] = {
        "task": "ingest.tasks.ingest_edge_log",
        "schedule": float(ingest_seconds),
        # The edge only: the worker reads its own EDGE_ACCESS_LOG, never a path from the broker.
        "kwargs": {"edge": edge_name},
        # A run still queued after a few periods is superseded by a newer one.
        "options": {"expires": float(ingest_seconds * 5)}
        | ({"queue": ingest_queue} if ingest_queue else {}),
    }
    return schedule


def _edges_entries(
    *, edges: list[str], ingest_seconds: int, gate_sync_seconds: int
) -> dict[str, Entry]:
    """One ingestion and one gate-sync entry per edge, each sent to that edge's queue.

    The tasks name the edge and nothing else: the worker on the edge knows its log and run
    directory, and refuses a task meant for another edge (see the tasks' guards).
    """
    schedule: dict[str, Entry] = {}
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
            "task": "edge.tasks.edge_gate_sync",
            "schedule": float(gate_sync_seconds),
            "kwargs": {"edge": name},
            # As the single-edge entry: superseded when stuck for long, not sooner.
            "options": {"queue": queue, "expires": float(max(10, 5 * gate_sync_seconds))},
        }
    return schedule
