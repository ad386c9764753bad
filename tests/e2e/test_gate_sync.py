"""The gate learns changes through the real sync (Celery beat + worker, or `manage.py
edge_sync`), and keeps serving from its last map while the control plane is down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from accelerator.services import tenant_resume, tenant_rotate, tenant_suspend
from tests.e2e import harness

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
LEARN_WITHIN = 5.0


def control_plane_env(edge, var_dir: Path, db_url: str) -> dict[str, str]:
    for sub in ("celery/queue", "celery/processed"):
        (var_dir / sub).mkdir(parents=True, exist_ok=True)
    return {
        "DATABASE_URL": db_url,
        "VAR_DIR": str(var_dir),
        "EDGE_RUN_DIR": str(edge.run_dir),
        "EDGE_NAME": edge.name,
        "CELERY_BROKER_URL": "filesystem://",
        "DJANGO_DEBUG": "true",
        "PYTHONUNBUFFERED": "1",
    }


def wait_status(edge, label: str, status: int, within: float = LEARN_WITHIN) -> float:
    """Seconds until GET /v2/ for label answers status; fails after `within`."""
    start = time.monotonic()
    while True:
        got = edge.get(label, "/v2/").status
        elapsed = time.monotonic() - start
        if got == status:
            return elapsed
        assert elapsed < within, f"{label}: still {got}, not {status}, after {elapsed:.1f}s"
        time.sleep(0.1)


@pytest.fixture
def celery_worker_with_beat(edge, tmp_path):
    """A real Celery worker with its embedded beat, using the project's schedule."""
    env = control_plane_env(edge, tmp_path / "var", harness.database_url())
    proc = harness.start_celery_with_beat(tmp_path, env)
    yield proc
    proc.stop(signal.SIGTERM, timeout=20)


def test_gate_learns_new_tenant_rotation_and_suspension_via_beat(
    edge, make_tenant, celery_worker_with_beat
):
    from accelerator.services import tenant_start

    # make_tenant syncs at once; here the beat task alone must bring every change.
    from accounts.models import User

    user = User.objects.create_user(email="beat@example.com", password="x-123456789")
    tenant = tenant_start(user=user)
    learned = [wait_status(edge, tenant.label, 200)]

    old = tenant.label
    tenant = tenant_rotate(tenant=tenant)
    learned.append(wait_status(edge, old, 404))
    learned.append(wait_status(edge, tenant.label, 200, within=1.0))

    tenant_suspend(tenant=tenant, reason="abuse")
    learned.append(wait_status(edge, tenant.label, 403))
    tenant_resume(tenant=tenant)
    learned.append(wait_status(edge, tenant.label, 200))
    assert max(learned) < LEARN_WITHIN
    print("gate learned changes after (s):", [round(x, 2) for x in learned])
    log = celery_worker_with_beat.log_tail(10**6)
    assert "edge.tasks.edge_gate_sync" in log and "succeeded" in log


def test_gate_keeps_serving_with_control_plane_down(edge, upstream, make_tenant, tmp_path):
    tenant = make_tenant()  # synced once; no worker, no beat, no gunicorn from here on
    small = upstream.images["small"]
    path = f"/v2/{small.repo}/manifests/{small.tag}"
    map_before = (edge.run_dir / "gate.map").read_text()
    assert tenant.label in map_before

    # The database becomes unreachable: the sync loop fails every round, touches nothing.
    dead_port = harness.free_port()
    env = control_plane_env(edge, tmp_path / "var", f"postgres://postgres@127.0.0.1:{dead_port}/x")
    result = subprocess.run(
        [sys.executable, "manage.py", "edge_sync", "--loop", "2", "--interval", "1"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    failed = int(result.stdout.split("done, ")[1].split()[0])
    assert failed >= 2, result.stdout + result.stderr  # every round failed, none crashed it
    assert (edge.run_dir / "gate.map").read_text() == map_before

    # Meanwhile the tenant's state changes in the database; the edge cannot learn it and keeps
    # serving the last state it knew.
    tenant_suspend(tenant=tenant, reason="while the edge is cut off")
    resp = edge.get(tenant.label, path, headers=[("Accept", harness.MT_MANIFEST)])
    assert resp.status == 200 and resp.body == small.image.manifest

    # An edge restarted during the outage comes back with its last map.
    edge.nginx.stop(signal.SIGQUIT)
    edge.nginx = harness.start_nginx(edge.params)
    resp = edge.get(tenant.label, path, headers=[("Accept", harness.MT_MANIFEST)])
    assert resp.status == 200 and resp.body == small.image.manifest
    blob = small.image.layers[0]
    assert edge.get(tenant.label, f"/v2/{small.repo}/blobs/{blob.digest}").body == blob.data
    assert edge.get("unknownlabel", "/v2/").status == 404

    # The control plane is back: one sync later the suspension is in force.
    result = subprocess.run(
        [sys.executable, "manage.py", "edge_sync"],
        cwd=ROOT,
        env={**os.environ, **control_plane_env(edge, tmp_path / "var", harness.database_url())},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "changed=True, reloaded=True" in result.stdout
    wait_status(edge, tenant.label, 403)
