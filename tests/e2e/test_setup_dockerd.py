"""The setup script's daemon.json runs a real dockerd that pulls through the accelerator, and
the setup's ping and the pull show up as the tenant's activity (client, version, pull)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from accelerator.models import TenantActivity
from ingest.services import ingest_edge
from tests.e2e import harness
from tests.e2e.conftest import _require_parts

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]


def test_setup_script_then_a_real_dockerd_pulls_through_the_mirror(
    edge, upstream, make_tenant, tmp_path, tmp_path_factory
):
    _require_parts("dockerd", "docker", "curl")
    tenant = make_tenant()
    with override_settings(MIRROR_PORT=edge.port, MIRROR_SCHEME="http"):
        script = Client().get(reverse("accelerator_setup", args=[tenant.label])).content
    (tmp_path / "setup.sh").write_bytes(script)
    # dockerd's containerd socket lives under its exec root: a short path (unix sockets: 108).
    root, droot = tmp_path / "root", tmp_path_factory.mktemp("sd")
    conf = root / "etc/docker/daemon.json"
    conf.parent.mkdir(parents=True)
    # Keys of the user's own: kept by the merge (and needed by a private dockerd 20.10).
    conf.write_text(
        json.dumps({"deprecated-key-path": str(droot / "data/key.json"), "log-level": "info"})
    )
    done = subprocess.run(
        [shutil.which("dash") or "sh", str(tmp_path / "setup.sh"), "docker"],
        env={"PATH": os.environ["PATH"], "ROOT": str(root), "NO_RESTART": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"the accelerator answers: {edge.url(tenant.label)}" in done.stdout
    merged = json.loads(conf.read_text())
    assert merged["registry-mirrors"] == [edge.url(tenant.label)]
    assert merged["log-level"] == "info"

    daemon = harness.start_dockerd(droot, mirrors=[], config_file=conf)
    try:
        pulled = daemon.cli("pull", "accel-small")
        assert pulled.returncode == 0, pulled.stderr + daemon.log()[-3000:]
        version = daemon.cli("version", "--format", "{{.Server.Version}}").stdout.strip()
    finally:
        daemon.stop()
    lines = [x for x in edge.log_lines() if x["tenant"] == tenant.label]
    agents = [x.get("ua", "") for x in lines]
    assert "mirror-accelerator-setup/1" in agents  # the script's ping
    pull_lines = [x for x in lines if "/manifests/" in x["uri"]]
    assert pull_lines and all(x["ua"].startswith(f"docker/{version}") for x in pull_lines)
    assert all(len(a) <= 256 for a in agents)

    ingest_edge(edge=edge.name, path=edge.access_log)
    activity = TenantActivity.objects.get(tenant=tenant)
    assert (activity.client, activity.client_version) == ("docker", version)
    pulls = activity.recent_pulls
    small = upstream.images["small"]
    assert [(p["repository"], p["reference"]) for p in pulls] == [("library/accel-small", "latest")]
    assert pulls[0]["bytes"] >= sum(b.size for b in small.image.blobs)
