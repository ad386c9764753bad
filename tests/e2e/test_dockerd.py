"""A real Docker daemon with the tenant's accelerator in registry-mirrors.

One daemon serves one tenant: its mirror list is fixed when it starts, so the scenarios change
the tenant's state through the project's services (suspend, exhaust, rotate) instead of
starting a daemon per label.
"""

from __future__ import annotations

import json

import pytest

from accelerator.services import (
    tenant_mark_exhausted,
    tenant_resume,
    tenant_rotate,
    tenant_suspend,
)
from tests.e2e import harness

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

NEXT = "Attempting next endpoint for pull after error"


def repo_digests(daemon, ref: str) -> list[str]:
    result = daemon.cli("image", "inspect", ref)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]["RepoDigests"]


def refused_pull(daemon, ref: str, code: str, timeout: float = 120) -> str:
    """Pull, expect failure, and return the daemon log lines about the mirror's refusal."""
    before = len(daemon.log())
    result = daemon.cli("pull", ref, timeout=timeout)
    assert result.returncode != 0, result.stdout
    log = daemon.log()[before:]
    lines = [line for line in log.splitlines() if NEXT in line]
    assert lines, log[-3000:]
    assert any(code in line for line in lines), lines
    return "\n".join(lines)


def test_docker_pull_through_tenant_mirror(edge, upstream, make_tenant, docker_daemon, edge_sync):
    tenant = make_tenant()
    daemon = docker_daemon(mirrors=[edge.url(tenant.label)])
    small, multi = upstream.images["small"], upstream.images["multi"]

    result = daemon.cli("pull", "accel-small")
    assert result.returncode == 0, result.stderr + daemon.log()[-3000:]
    assert repo_digests(daemon, "accel-small") == [f"accel-small@{small.image.digest}"]

    result = daemon.cli("pull", f"accel-multi:{multi.tag}")
    assert result.returncode == 0, result.stderr
    # The daemon records the manifest list's digest, and unpacks its own platform.
    assert repo_digests(daemon, f"accel-multi:{multi.tag}") == [f"accel-multi@{multi.image.digest}"]
    inspect = json.loads(daemon.cli("image", "inspect", f"accel-multi:{multi.tag}").stdout)[0]
    assert inspect["Architecture"] == harness.host_arch()
    assert inspect["Id"] == multi.image.images[harness.host_arch()].config.digest

    lines = [x for x in edge.log_lines() if x["tenant"] == tenant.label]
    assert lines and all(x["status"] in (200, 304) for x in lines), lines
    # Docker sends its Hub credentials to mirrors: here it has none, and nothing is refused.
    assert {x["method"] for x in lines} <= {"GET", "HEAD"}


def test_docker_pull_refused_for_suspended_exhausted_and_rotated(
    edge, upstream, make_tenant, docker_daemon, edge_sync
):
    tenant = make_tenant()
    daemon = docker_daemon(mirrors=[edge.url(tenant.label)])

    tenant_suspend(tenant=tenant, reason="abuse")
    edge_sync()
    refused_pull(daemon, "accel-small", "denied: this accelerator is suspended")

    tenant_resume(tenant=tenant)
    assert tenant_mark_exhausted(tenant_id=tenant.pk)
    edge_sync()
    refused_pull(daemon, "accel-small", "toomanyrequests: this accelerator has used up")

    tenant_rotate(tenant=tenant)
    edge_sync()
    refused_pull(daemon, "accel-small", "unknown accelerator host")

    statuses = {x["status"] for x in edge.log_lines() if x["tenant"] == tenant.label}
    assert statuses <= {403, 404, 429}


def test_docker_pull_refused_for_a_label_never_issued(edge, make_tenant, docker_daemon, hosts):
    make_tenant()  # the gate knows someone, just not this label
    label = "neverissued2"
    hosts.add(edge.host(label, port=False))
    daemon = docker_daemon(mirrors=[edge.url(label)])
    refused_pull(daemon, "accel-small", "unknown accelerator host")
    lines = [x for x in edge.log_lines() if x["tenant"] == label]
    assert lines and {x["status"] for x in lines} == {404}
