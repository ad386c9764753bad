"""The beat schedule, built by one pure function: every entry as beat sends it."""

from __future__ import annotations

from config.beat import beat_schedule

VALUES = dict(
    edge_name="local",
    ingest_seconds=2,
    gate_sync_seconds=3,
    reconcile_seconds=60,
    dashboard_cache_seconds=60,
)
CONTROL_PLANE = {
    "ledger-reconcile": {
        "task": "quota.tasks.ledger_reconcile",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    "dashboard-refresh": {"task": "dashboard.tasks.dashboard_refresh", "schedule": 30},
    "account-purge": {"task": "selfservice.tasks.account_purge", "schedule": 3600.0},
}


def test_one_edge_runs_its_work_on_the_default_queue():
    assert beat_schedule(edges=[], ingest_queue="", **VALUES) == CONTROL_PLANE | {
        "edge-gate-sync": {
            "task": "edge.tasks.edge_gate_sync",
            "schedule": 3.0,
            "options": {"expires": 15.0},
        },
        "ingest-edge-log": {
            "task": "ingest.tasks.ingest_edge_log",
            "schedule": 2.0,
            "kwargs": {"edge": "local"},
            "options": {"expires": 10.0},
        },
    }


def test_one_edge_sends_ingestion_to_ingest_queue_when_set():
    schedule = beat_schedule(edges=[], ingest_queue="ingest", **VALUES)
    assert schedule["ingest-edge-log"]["options"] == {"expires": 10.0, "queue": "ingest"}
    assert "queue" not in schedule["edge-gate-sync"]["options"]


def test_edges_each_get_their_own_entries_on_their_queue():
    schedule = beat_schedule(edges=["east", "west"], ingest_queue="ingest", **VALUES)
    per_edge = {}
    for name in ("east", "west"):
        per_edge[f"ingest-edge-log:{name}"] = {
            "task": "ingest.tasks.ingest_edge_log",
            "schedule": 2.0,
            "kwargs": {"edge": name},
            "options": {"queue": f"edge.{name}", "expires": 10.0},
        }
        per_edge[f"edge-gate-sync:{name}"] = {
            "task": "edge.tasks.edge_gate_sync",
            "schedule": 3.0,
            "kwargs": {"edge": name},
            "options": {"queue": f"edge.{name}", "expires": 15.0},
        }
    # No single-edge entries; the control plane's own work stays on the default queue.
    assert schedule == CONTROL_PLANE | per_edge


def test_short_periods_keep_their_floors():
    short = VALUES | {"gate_sync_seconds": 1, "dashboard_cache_seconds": 4}
    schedule = beat_schedule(edges=[], ingest_queue="", **short)
    assert schedule["edge-gate-sync"]["options"] == {"expires": 10.0}
    assert schedule["dashboard-refresh"]["schedule"] == 5
