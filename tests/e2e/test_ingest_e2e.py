"""Usage from the real edge's access log: real pulls, real ingestion, real enforcement.

- skopeo and a Docker daemon pull through a tenant's mirror; ingestion of the edge's log
  charges the tenant exactly the manifest and blob sizes it was sent;
- a tenant whose allowance runs out is refused on its next manifest request through the real
  Celery beat (ingestion, then the gate sync), within 15 s of the line reaching the log, a
  Docker daemon falls back, and a grant re-opens the mirror.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from django.db.models import Sum

from ingest.services import ingest_edge
from quota.models import UsageBucket
from tests.e2e import harness

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
NEXT = "Attempting next endpoint for pull after error"
ENFORCE_WITHIN = 15.0


def charged(tenant) -> tuple[int, int]:
    agg = UsageBucket.objects.filter(tenant=tenant).aggregate(b=Sum("bytes"), r=Sum("requests"))
    return agg["b"] or 0, agg["r"] or 0


def tenant_lines(edge, label: str) -> list[dict]:
    return [x for x in edge.log_lines() if x["tenant"] == label]


def gets(lines: list[dict], suffix: str) -> int:
    """Complete GETs of one manifest or blob (by digest or tag) in the tenant's lines."""
    return sum(
        1
        for x in lines
        if x["method"] == "GET" and x["status"] == 200 and x["uri"].endswith(suffix)
    )


def expected_bytes(lines: list[dict], parts: list[tuple[str, int]]) -> int:
    """Sizes of the parts the tenant was sent: each (uri suffix, size) times its GETs."""
    return sum(gets(lines, suffix) * size for suffix, size in parts)


@pytest.mark.django_db
def test_skopeo_and_docker_pulls_are_charged_exactly_their_sizes(
    edge, upstream, make_tenant, pull_with_skopeo, docker_daemon
):
    tenant = make_tenant()
    small = upstream.images["small"]
    pull_with_skopeo(tenant.label, "small")
    lines = tenant_lines(edge, tenant.label)  # flushes nginx's log buffer first
    ingest_edge(edge=edge.name, path=edge.access_log)
    img = small.image
    parts = [
        # The API ping answers 200 with the body "{}": charged like any 200 (the rule is
        # body bytes of every 200/206), 2 bytes per pull.
        ("/v2/", 2),
        (f"/manifests/{small.tag}", len(img.manifest)),
        (f"/manifests/{img.digest}", len(img.manifest)),
        *[(f"/blobs/{b.digest}", b.size) for b in img.blobs],
    ]
    # Every blob was sent once, and a manifest at least once: the sizes are the image's own.
    assert all(gets(lines, f"/blobs/{b.digest}") == 1 for b in img.blobs), lines
    assert gets(lines, f"/manifests/{small.tag}") + gets(lines, f"/manifests/{img.digest}") >= 1
    want = expected_bytes(lines, parts)
    assert want >= len(img.manifest) + sum(b.size for b in img.blobs)
    assert charged(tenant) == (want, len(lines))

    # A real Docker daemon pulling a manifest list: the list, its platform's manifest, the
    # config and the layer, nothing else.
    multi = upstream.images["multi"]
    daemon = docker_daemon(mirrors=[edge.url(tenant.label)])
    result = daemon.cli("pull", f"accel-multi:{multi.tag}")
    assert result.returncode == 0, result.stderr + daemon.log()[-3000:]
    lines = tenant_lines(edge, tenant.label)
    ingest_edge(edge=edge.name, path=edge.access_log)
    own = multi.image.images[harness.host_arch()]
    parts += [
        (f"/manifests/{multi.tag}", len(multi.image.manifest)),
        (f"/manifests/{multi.image.digest}", len(multi.image.manifest)),
        (f"/manifests/{own.digest}", len(own.manifest)),
        *[(f"/blobs/{b.digest}", b.size) for b in own.blobs],
    ]
    assert all(gets(lines, f"/blobs/{b.digest}") == 1 for b in own.blobs), lines
    assert gets(lines, f"/manifests/{own.digest}") == 1
    assert charged(tenant) == (expected_bytes(lines, parts), len(lines))
    # Ingesting again changes nothing.
    ingest_edge(edge=edge.name, path=edge.access_log)
    assert charged(tenant) == (expected_bytes(lines, parts), len(lines))


@pytest.fixture
def worker_with_beat(edge, tmp_path):
    """The control plane as deployed: a Celery worker with its embedded beat running the
    project's schedule (ingestion and gate sync every 2 s), with a tiny monthly allowance."""

    def start(quota_bytes: int) -> harness.Proc:
        var = tmp_path / "var"
        for sub in ("celery/queue", "celery/processed"):
            (var / sub).mkdir(parents=True, exist_ok=True)
        env = {
            "DATABASE_URL": harness.database_url(),
            "VAR_DIR": str(var),
            "EDGE_RUN_DIR": str(edge.run_dir),
            "EDGE_NAME": edge.name,
            "EDGE_ACCESS_LOG": str(edge.access_log),
            "QUOTA_MONTHLY_BYTES": str(quota_bytes),
            "CELERY_BROKER_URL": "filesystem://",
            "DJANGO_DEBUG": "true",
            "PYTHONUNBUFFERED": "1",
        }
        proc = harness.start_celery_with_beat(tmp_path, env)
        procs.append(proc)
        return proc

    procs: list[harness.Proc] = []
    yield start
    for p in procs:
        p.stop(signal.SIGTERM, timeout=20)


def _manifest_status(edge, label: str) -> int:
    return edge.get(label, "/v2/library/accel-small/manifests/latest", method="HEAD").status


@pytest.mark.django_db(transaction=True)
def test_exhausted_tenant_is_refused_within_15s_docker_falls_back_and_a_grant_reopens(
    edge, upstream, make_tenant, docker_daemon, worker_with_beat, settings
):
    from accelerator.models import Tenant
    from quota.grants import grant_create

    small = upstream.images["small"]
    allowance = len(small.image.manifest) + sum(b.size for b in small.image.blobs) - 1
    settings.QUOTA_MONTHLY_BYTES = allowance  # this process and the worker agree
    tenant = make_tenant()
    worker = worker_with_beat(allowance)
    daemon = docker_daemon(mirrors=[edge.url(tenant.label)])

    result = daemon.cli("pull", "accel-small")
    assert result.returncode == 0, result.stderr + daemon.log()[-3000:]
    served = [x for x in edge.log_lines() if x["tenant"] == tenant.label]
    assert served and {x["status"] for x in served} <= {200}, served
    written = max(x["ts"] for x in served)  # nginx writes its line when the request ends

    # Nothing but beat now: ingestion charges the pull, the ledger marks the tenant exhausted,
    # the gate sync renders it, and nginx refuses the next manifest request.
    while True:
        status = _manifest_status(edge, tenant.label)
        waited = time.time() - written
        if status == 429:
            break
        assert status == 200, status
        assert waited < ENFORCE_WITHIN, (
            f"still served {waited:.1f}s after the line was written\n" + worker.log_tail(6000)
        )
        time.sleep(0.1)
    print(f"refused {waited:.1f}s after the last line of the pull was written")
    assert Tenant.objects.get(pk=tenant.pk).exhausted_at is not None
    assert charged(tenant)[0] > allowance

    # The Docker daemon is refused by the mirror and falls back to the next endpoint.
    before = len(daemon.log())
    result = daemon.cli("pull", "accel-small", timeout=120)

    def fallback() -> list[str]:
        return [x for x in daemon.log()[before:].splitlines() if NEXT in x]

    # The daemon's line is the event; it is read until it shows, within a bound.
    deadline = time.monotonic() + 30
    while not any("toomanyrequests" in x for x in fallback()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert any("toomanyrequests" in x for x in fallback()), result.stderr + daemon.log()[-3000:]

    # A staff grant re-opens the mirror, again through beat alone.
    grant_create(tenant=tenant, kind="staff", bytes=10**9, source_key=f"e2e-{tenant.pk}")
    deadline = time.monotonic() + ENFORCE_WITHIN
    while _manifest_status(edge, tenant.label) != 200:
        assert time.monotonic() < deadline, worker.log_tail(6000)
        time.sleep(0.1)
    result = daemon.cli("pull", "accel-small")
    assert result.returncode == 0, result.stderr + daemon.log()[-3000:]
    log = worker.log_tail(10**6)
    assert "ingest.tasks.ingest_edge_log" in log and "succeeded" in log
