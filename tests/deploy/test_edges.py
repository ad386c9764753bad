"""The control plane's list of edges: parsing, per-edge beat entries and queues, task guards,
and the dashboard showing a configured edge before its first report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.beat import beat_schedule
from config.edges import EdgesError, edge_queue, edges_parse

ROOT = Path(__file__).resolve().parents[2]


def test_edges_parse_names_and_derives_queues():
    assert edges_parse("") == []
    assert edges_parse(" east , west-2,") == ["east", "west-2"]
    assert edge_queue("east") == "edge.east"


@pytest.mark.parametrize(
    "raw, message",
    [
        ("east,east", "listed twice"),
        ("east,we st", "not an edge name"),
        ("a" * 65, "not an edge name"),
        ("east;rm", "not an edge name"),
    ],
)
def test_edges_parse_refuses_bad_lists(raw, message):
    with pytest.raises(EdgesError, match=message):
        edges_parse(raw)


def test_one_ingest_and_one_gate_sync_entry_per_edge_on_its_queue():
    schedule = beat_schedule(
        edges=["east", "west"],
        edge_name="local",
        ingest_seconds=2,
        ingest_queue="",
        gate_sync_seconds=2,
        reconcile_seconds=60,
        dashboard_cache_seconds=60,
    )
    assert set(schedule) - {"ledger-reconcile", "dashboard-refresh", "account-purge"} == {
        "ingest-edge-log:east",
        "edge-gate-sync:east",
        "ingest-edge-log:west",
        "edge-gate-sync:west",
    }
    for name in ("east", "west"):
        ingest = schedule[f"ingest-edge-log:{name}"]
        sync = schedule[f"edge-gate-sync:{name}"]
        assert ingest["task"] == "ingest.tasks.ingest_edge_log"
        assert sync["task"] == "edge.tasks.edge_gate_sync"
        # Only the edge's name travels: the path is the edge machine's own setting.
        assert ingest["kwargs"] == sync["kwargs"] == {"edge": name}
        assert ingest["options"]["queue"] == sync["options"]["queue"] == f"edge.{name}"


def _settings_in_subprocess(env: dict[str, str], code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            f"import django; django.setup(); from django.conf import settings; {code}",
        ],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_settings_route_each_edge_to_its_queue_and_drop_the_single_edge_entries():
    code = (
        "import json; print(json.dumps({k: v.get('options', {}).get('queue') "
        "for k, v in settings.CELERY_BEAT_SCHEDULE.items()}))"
    )
    result = _settings_in_subprocess({"EDGES": "east,west"}, code)
    assert result.returncode == 0, result.stderr
    import json

    queues = json.loads(result.stdout)
    assert "ingest-edge-log" not in queues and "edge-gate-sync" not in queues
    assert queues["ingest-edge-log:east"] == "edge.east"
    assert queues["edge-gate-sync:west"] == "edge.west"
    # The control plane's own periodic work stays on the default queue.
    assert queues["ledger-reconcile"] is None

    single = json.loads(_settings_in_subprocess({"EDGES": ""}, code).stdout)
    assert "ingest-edge-log" in single and "edge-gate-sync" in single


def test_settings_refuse_a_bad_edge_list_with_a_message():
    result = _settings_in_subprocess({"EDGES": "east,east"}, "print('started')")
    assert result.returncode != 0
    assert "EDGES: 'east' is listed twice" in result.stderr


def test_a_task_for_another_edge_is_refused_and_touches_nothing(settings, tmp_path, db):
    from edge.tasks import edge_gate_sync
    from ingest.models import EdgeIngest
    from ingest.tasks import ingest_edge_log

    settings.EDGE_NAME = "east"
    settings.EDGE_RUN_DIR = tmp_path / "run"
    log = tmp_path / "access.log"
    log.write_text('{"ts":1}\n')
    settings.EDGE_ACCESS_LOG = log
    assert "refused" in ingest_edge_log(edge="west")
    assert not EdgeIngest.objects.exists()
    assert "refused" in edge_gate_sync(edge="west")
    assert not (tmp_path / "run" / "gate.map").exists()
    # Its own edge's task runs (the gate map is written).
    assert edge_gate_sync(edge="east")["changed"] is True
    assert (tmp_path / "run" / "gate.map").exists()


@pytest.mark.django_db
def test_dashboard_lists_a_configured_edge_that_never_reported(client, staff, settings):
    from ingest.models import EdgeIngest

    settings.EDGES = ["east", "west"]
    from django.utils import timezone

    ran = timezone.now()
    EdgeIngest.objects.create(edge="east", path="/x", lines_total=7, last_run_at=ran)
    client.force_login(staff)
    resp = client.get("/staff/")
    assert resp.status_code == 200
    health = resp.context["ingest_health"]
    rows = [e["row"] for e in (health() if callable(health) else health)]
    assert [(r.edge, r.lines_total, r.last_run_at) for r in rows] == [
        ("east", 7, ran),
        ("west", 0, None),
    ]
    table = resp.content.decode().split('data-testid="ingest-health"', 1)[1].split("</table>")[0]
    east_row, west_row = table.split("<td>east</td>", 1)[1].split("<td>west</td>", 1)
    # West never reported: flagged; east ran just now: not.
    assert 'data-testid="edge-silent"' in west_row
    assert 'data-testid="edge-silent"' not in east_row


@pytest.mark.django_db
def test_dashboard_flags_an_edge_whose_worker_stopped_reporting(client, staff, settings):
    from datetime import timedelta

    from django.utils import timezone

    from ingest.models import EdgeIngest

    settings.EDGES = []
    EdgeIngest.objects.create(
        edge="old", path="/x", last_run_at=timezone.now() - timedelta(minutes=5)
    )
    client.force_login(staff)
    body = client.get("/staff/").content.decode()
    assert body.count('data-testid="edge-silent"') == 1
