"""Rendering the registries' routing: one registry config per upstream (0600, credentials
quoted), a valid nginx config, stale configs removed, hostile names refused before nginx."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace

import pytest

from config.upstreams import Upstream
from edge import render as edge_config
from edge.run_dir import edge_render
from tests.conftest import require
from tests.e2e import harness

pytestmark = pytest.mark.e2e

PARAMS = harness.RENDER_PARAMS
TEMPLATE = (harness.DEPLOY / "nginx" / "edge.conf.template").read_text()
GHCR = edge_config.UpstreamRoute("ghcr.io", "https://ghcr.io", "127.0.0.1:5001")


@pytest.mark.parametrize(
    "change, words",
    [
        ({"upstreams": (replace(GHCR, name='gh"cr.io'),)}, "not a registry host name"),
        ({"upstreams": (replace(GHCR, name="ghcr.io;x"),)}, "not a registry host name"),
        ({"upstreams": (replace(GHCR, name="docker.io"),)}, "unique"),
        ({"upstreams": (GHCR, replace(GHCR, registry_listen="127.0.0.1:5002"))}, "unique"),
        ({"upstreams": (replace(GHCR, registry_listen="127.0.0.1:5000"),)}, "own listen"),
        ({"upstreams": (replace(GHCR, url="https://ghcr.io/x;"),)}, "url"),
        ({"upstreams": (replace(GHCR, username="u"),)}, "both"),
        ({"deny": ("quay.io/a/b",)}, "UPSTREAM_DENY"),
        ({"deny": ('ghcr.io/a"b',)}, "UPSTREAM_DENY"),
        ({"upstreams": (GHCR,), "ca_bundle": None}, "CA bundle"),
    ],
)
def test_hostile_upstream_params_are_refused(change, words) -> None:
    with pytest.raises(edge_config.EdgeConfigError, match=words):
        edge_config.nginx_conf(TEMPLATE, replace(PARAMS, **change))


def test_registry_configs_per_upstream_and_a_valid_nginx_config(settings, request) -> None:
    require(harness.which("nginx") is not None, "nginx is not installed")
    tmp_path = harness.worker_readable_dir("e2e-render-regs-")
    request.addfinalizer(lambda: shutil.rmtree(tmp_path, ignore_errors=True))
    settings.EDGE_RUN_DIR = tmp_path / "edge"
    settings.EDGE_ACCESS_LOG = tmp_path / "edge" / "logs" / "access.log"
    settings.EDGE_REGISTRY_STORAGE_DIR = tmp_path / "registry"
    settings.EDGE_CACHE_DIR = tmp_path / "cache"
    settings.EDGE_LISTEN = f"127.0.0.1:{harness.free_port()}"
    settings.EDGE_REGISTRY_LISTEN = "127.0.0.1:5100"
    settings.UPSTREAMS = (
        Upstream("ghcr.io", "https://ghcr.io", "bot", 'pa"ss: word'),
        Upstream("quay.io", "https://quay.io"),
    )
    settings.UPSTREAM_DENY = ("ghcr.io/org/img",)
    files = edge_render()
    run = files.run_dir
    ghcr = (run / "registry-ghcr.io.yml").read_text()
    assert "addr: 127.0.0.1:5101" in ghcr and 'remoteurl: "https://ghcr.io"' in ghcr
    assert 'password: "pa\\"ss: word"' in ghcr
    assert str(tmp_path / "registry" / "upstreams" / "ghcr.io") in ghcr
    assert "addr: 127.0.0.1:5102" in (run / "registry-quay.io.yml").read_text()
    for conf in run.glob("registry*.yml"):
        assert conf.stat().st_mode & 0o777 == 0o600
    check = subprocess.run(
        [*harness.nginx_cmd(run), "-t"], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stderr
    # An upstream taken out of UPSTREAMS loses its registry config (nothing starts it again).
    settings.UPSTREAMS = (Upstream("quay.io", "https://quay.io"),)
    settings.UPSTREAM_DENY = ()
    edge_render()
    assert sorted(p.name for p in run.glob("registry*.yml")) == [
        "registry-quay.io.yml",
        "registry.yml",
    ]


def test_names_that_differ_only_in_dot_or_dash_get_their_own_registries() -> None:
    params = replace(
        PARAMS,
        upstreams=(
            edge_config.UpstreamRoute("a-b.io", "https://x.io", "127.0.0.1:5001"),
            edge_config.UpstreamRoute("a.b.io", "https://y.io", "127.0.0.1:5002"),
        ),
    )
    conf = edge_config.nginx_conf(TEMPLATE, params)
    assert conf.count("upstream registry_a__b_io {") == 1
    assert conf.count("upstream registry_a_b_io {") == 1
