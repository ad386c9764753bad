"""Docker Hub's allowance, read from its ratelimit headers with a HEAD (free upstream) per
probed registry, and shown to staff per edge and registry with a warning near the end.

The stand-in for Docker Hub is a Distribution registry behind an nginx that adds the
headers Docker Hub sends; ghcr.io's stand-in sends none."""

from __future__ import annotations

import inspect
import shutil

import pytest
from django.core.management import call_command
from django.urls import reverse

from config.beat import beat_schedule
from config.upstreams import Upstream
from edge.models import UpstreamAllowance
from tests.conftest import require
from tests.e2e import harness

pytestmark = pytest.mark.e2e


@pytest.fixture
def hub_with_ratelimit(request):
    for part in ("nginx", "docker-registry"):
        require(harness.which(part) is not None, f"{part} is not installed")
    workdir = harness.worker_readable_dir("e2e-allowance-")
    request.addfinalizer(lambda: shutil.rmtree(workdir, ignore_errors=True))
    hub = harness.start_registry(workdir / "hub", name="hub")
    request.addfinalizer(hub.stop)
    ghcr = harness.start_registry(workdir / "ghcr", name="ghcr")
    request.addfinalizer(ghcr.stop)
    harness.push_image(
        hub.port, "ratelimitpreview/test", "latest", harness.make_image(files={"a": b"1"})
    )
    harness.push_image(ghcr.port, "org/probe", "1", harness.make_image(files={"a": b"2"}))
    front = workdir / "front"
    # Docker Hub's stand-in with its rate-limit headers.
    proc, url = harness.start_front_nginx(
        front,
        f"proxy_pass http://127.0.0.1:{hub.port};\n"
        'add_header ratelimit-limit "100;w=21600" always;\n'
        'add_header ratelimit-remaining "15;w=21600" always;',
    )
    request.addfinalizer(proc.stop)
    return url, ghcr.url, front / "access.log"


def test_probe_reads_the_headers_with_a_head_and_staff_are_warned(
    hub_with_ratelimit, settings, client, staff
):
    hub_url, ghcr_url, hub_log = hub_with_ratelimit
    settings.EDGE_NAME = "edge-a"
    settings.UPSTREAM_URL = hub_url
    settings.UPSTREAMS = (Upstream("ghcr.io", ghcr_url),)
    settings.UPSTREAM_RATELIMIT_PROBES = {
        "docker.io": ("ratelimitpreview/test", "latest"),
        "ghcr.io": ("org/probe", "1"),
    }
    settings.UPSTREAM_RATELIMIT_WARN_PERCENT = 20
    call_command("edge_allowance")
    rows = {r.registry: r for r in UpstreamAllowance.objects.filter(edge="edge-a")}
    assert (rows["docker.io"].limit, rows["docker.io"].remaining) == (100, 15)
    assert rows["docker.io"].window_seconds == 21600 and rows["docker.io"].error == ""
    assert rows["ghcr.io"].limit is None and rows["ghcr.io"].error == ""
    # Only HEADs reached the manifest: a probe never costs a pull.
    hub_requests = [line for line in hub_log.read_text().splitlines() if "/manifests/" in line]
    assert hub_requests and all('"HEAD ' in line for line in hub_requests)

    client.force_login(staff)
    body = client.get(reverse("dashboard")).content.decode()
    assert 'data-testid="allowance-warning" data-registry="docker.io"' in body
    assert 'data-testid="allowance-warning" data-registry="ghcr.io"' not in body
    assert "not reported by this registry" in body
    metrics = client.get("/metrics").content.decode()
    assert 'accel_upstream_ratelimit_remaining{edge="edge-a",registry="docker.io"} 15.0' in metrics
    assert 'accel_upstream_ratelimit_limit{edge="edge-a",registry="docker.io"} 100.0' in metrics
    assert 'registry="ghcr.io"' not in metrics  # it reports none

    # A second reading overwrites the first; above the threshold, no warning.
    settings.UPSTREAM_RATELIMIT_WARN_PERCENT = 10
    call_command("edge_allowance")
    assert UpstreamAllowance.objects.filter(edge="edge-a").count() == 2
    assert "allowance-warning" not in client.get(reverse("dashboard")).content.decode()


def test_an_unreachable_upstream_is_recorded_not_raised(settings, db):
    settings.EDGE_NAME = "edge-b"
    settings.UPSTREAM_URL = f"http://127.0.0.1:{harness.free_port()}"
    settings.UPSTREAMS = ()
    settings.UPSTREAM_RATELIMIT_PROBES = {"docker.io": ("ratelimitpreview/test", "latest")}
    call_command("edge_allowance")
    row = UpstreamAllowance.objects.get(edge="edge-b", registry="docker.io")
    assert row.limit is None and "unreachable" in row.error


def test_beat_probes_from_every_edge_on_its_queue() -> None:
    values = dict(
        edge_name="local",
        ingest_seconds=2,
        ingest_queue="",
        gate_sync_seconds=2,
        reconcile_seconds=60,
        dashboard_cache_seconds=60,
    )
    if "access_log" in inspect.signature(beat_schedule).parameters:
        values["access_log"] = "/srv/a.log"
    one = beat_schedule(edges=[], allowance_seconds=300, **values)
    assert one["upstream-allowance"] == {
        "task": "edge.tasks.upstream_allowance_probe",
        "schedule": 300.0,
        "kwargs": {},
        "options": {"expires": 300.0},
    }
    many = beat_schedule(edges=["east", "west"], allowance_seconds=300, **values)
    assert many["upstream-allowance:west"]["options"]["queue"] == "edge.west"
    assert "upstream-allowance" not in beat_schedule(edges=[], allowance_seconds=0, **values)
