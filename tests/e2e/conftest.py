"""Fixtures for end-to-end tests of the edge with real parts. Reusable by other test modules.

What they give (all processes on 127.0.0.1, kernel-assigned ports, stopped at teardown):

- ``upstream`` (session): a plain CNCF Distribution registry standing in for Docker Hub, filled
  with images built here: ``upstream.images["small"]`` (one small layer),
  ``["multi"]`` (a manifest list: the host's architecture and one other) and ``["large"]``
  (one ~32 MB layer). Each is an ``UpstreamImage(repo, tag, image)``; ``repo`` is
  ``library/accel-<name>``, so ``docker pull accel-<name>`` through a mirror asks for it.
  ``upstream.registry.blob_reads(digest)`` counts complete GETs of a blob in its log.
- ``edge`` (session): nginx rendered from ``deploy/nginx`` (gate, access log, blob cache whose
  misses nginx fetches from ``upstream`` itself, with the token helper
  ``edge.token_helper``) in front of Distribution in proxy mode (``deploy/registry``,
  manifests) pulling from ``upstream``. ``edge.port``, ``edge.host(label)``
  (``<label>.<MIRROR_DOMAIN>:<port>``), ``edge.url(label)``, ``edge.access_log`` (the JSON
  access log), ``edge.name`` (= settings.EDGE_NAME), ``edge.run_dir``, ``edge.get(label,
  path)``, ``edge.log_lines()`` (flushes nginx's log buffer first).
- ``edge_sync`` (function; needs the database): call it after changing tenants; it runs the real
  ``edge.gate_sync.gate_sync`` into the edge's run directory and waits for nginx's reload.
  ``edge_sync(other_edge)`` (or the plain function ``sync_gate(other_edge)``) syncs another one.
- ``make_tenant`` (function; needs the database): ``make_tenant()`` creates a verified user and
  starts their accelerator through ``accelerator.services.tenant_start``, syncs the gate, and
  resolves the tenant's host for Go programs; returns the Tenant.
- ``hosts`` (session): ``hosts.add(name)`` adds a 127.0.0.1 line to /etc/hosts for dockerd and
  skopeo (Go does not resolve ``*.localhost``); removed at the end of the session.
- ``skopeo`` (session): ``tests.e2e.harness.Skopeo`` with private HOME/XDG dirs, run as an
  unprivileged user; ``skopeo.inspect(ref)``, ``skopeo.copy_to_dir(ref, name)``,
  ``skopeo.mirror_docker_io(edge.host(label))``.
- ``docker_daemon`` (session): ``docker_daemon(mirrors=[edge.url(label)])`` returns a running
  private dockerd with that mirror list (restarted only when the list changes; startup takes
  under a second); ``.cli("pull", ...)``, ``.log()``.
- ``edge.log_lines()`` rows carry ``cache`` = MISS/HIT for blob GETs and HEADs (a HEAD never fills).
- ``tests.e2e.upstream_auth.start_auth_upstream(dir, images)``: an upstream like Docker Hub
  (bearer tokens, 307 to a counting blob store), as used by test_blob_cache.py.
- ``pull_with_skopeo(label, name)``: copies ``docker.io/library/accel-<name>`` through a tenant's
  mirror into a directory and verifies digests and sizes against the upstream.
"""

from __future__ import annotations

import os
import platform
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require
from tests.e2e import harness

pytestmark = pytest.mark.e2e

LARGE_LAYER_BYTES = 32 * 1024 * 1024


@dataclass
class UpstreamImage:
    repo: str
    tag: str
    image: harness.Image | harness.ImageIndex

    @property
    def docker_ref(self) -> str:
        return f"docker.io/{self.repo}:{self.tag}"


@dataclass
class Upstream:
    registry: harness.Registry
    images: dict[str, UpstreamImage]


def _require_parts(*names: str) -> None:
    for name in names:
        require(harness.which(name) is not None, f"{name} is not installed")


@pytest.fixture(scope="session")
def upstream(tmp_path_factory) -> Iterator[Upstream]:
    _require_parts("docker-registry")
    workdir = tmp_path_factory.mktemp("upstream")
    registry = harness.start_registry(workdir)
    try:
        arch = harness.host_arch()
        other = "arm64" if arch != "arm64" else "amd64"
        images = {
            "small": UpstreamImage(
                "library/accel-small",
                "latest",
                harness.make_image(files={"hello": b"#!/bin/sh\necho hello from e2e\n"}, arch=arch),
            ),
            "multi": UpstreamImage(
                "library/accel-multi",
                "1.0",
                harness.make_index(
                    {
                        arch: harness.make_image(files={"arch": arch.encode()}, arch=arch),
                        other: harness.make_image(files={"arch": other.encode()}, arch=other),
                    }
                ),
            ),
            "large": UpstreamImage(
                "library/accel-large",
                "latest",
                harness.make_image(files={"big.bin": os.urandom(LARGE_LAYER_BYTES)}, arch=arch),
            ),
        }
        for item in images.values():
            harness.push_image(registry.port, item.repo, item.tag, item.image)
        yield Upstream(registry, images)
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def edge(upstream, tmp_path_factory) -> Iterator[harness.Edge]:
    from django.conf import settings

    _require_parts("nginx", "docker-registry")
    workdir = harness.worker_readable_dir("e2e-edge-")
    e = harness.start_edge(
        workdir,
        upstream_url=upstream.registry.url,
        name=settings.EDGE_NAME,
        mirror_domain=settings.MIRROR_DOMAIN,
    )
    try:
        yield e
    finally:
        e.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def hosts() -> Iterator[harness.HostsFile]:
    require(harness.HostsFile.writable(), "/etc/hosts is not writable (run the e2e tests as root)")
    h = harness.HostsFile()
    try:
        yield h
    finally:
        h.remove_all()


def sync_gate(target: harness.Edge):
    """The real gate sync into target's run directory; waits until nginx serves the map."""
    from edge.gate_sync import gate_sync

    old = harness.child_pids(target.nginx.pid)
    # Now, not at the next interval: the tests here are about the gate, not about coalescing
    # reloads (tests/e2e/test_edge_hardening.py is).
    result = gate_sync(run_dir=target.run_dir, reload_every=0)
    if result.changed or result.reloaded:
        assert result.reloaded, "nginx was not signalled"
        target.wait_reloaded(old)
    return result


@pytest.fixture
def edge_sync(edge, db):
    """Run the real gate sync for `edge` (or the edge given) now and wait for the reload."""

    def sync(target: harness.Edge | None = None):
        return sync_gate(target or edge)

    return sync


@pytest.fixture
def make_tenant(edge, edge_sync, hosts, django_user_model):
    from allauth.account.models import EmailAddress

    from accelerator.services import tenant_start

    def make(email: str | None = None):
        email = email or f"user-{secrets.token_hex(4)}@example.com"
        user = django_user_model.objects.create_user(email=email, password="e2e-pass-12345")
        EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
        tenant = tenant_start(user=user)
        hosts.add(edge.host(tenant.label, port=False))
        edge_sync()
        return tenant

    return make


@pytest.fixture(scope="session")
def skopeo() -> Iterator[harness.Skopeo]:
    _require_parts("skopeo")
    if os.geteuid() == 0:
        _require_parts("setpriv")
    s = harness.Skopeo()
    try:
        yield s
    finally:
        s.cleanup()


@pytest.fixture
def pull_with_skopeo(edge, upstream, skopeo):
    """Copy docker.io/library/accel-<name> through the tenant's mirror; verify every blob."""

    def pull(label: str, name: str, *, arch: str | None = None) -> Path:
        item = upstream.images[name]
        skopeo.mirror_docker_io(edge.host(label))
        extra = ("--override-arch", arch) if arch else ()
        result, dest = skopeo.copy_to_dir(f"docker://{item.docker_ref}", name, *extra)
        assert result.returncode == 0, result.stderr
        image = item.image
        if isinstance(image, harness.ImageIndex):
            image = image.images[arch or harness.host_arch()]
        harness.verify_dir_copy(dest, image)
        return dest

    return pull


@pytest.fixture(scope="session")
def docker_daemon(tmp_path_factory) -> Iterator:
    _require_parts("dockerd", "docker")
    state: dict = {"daemon": None}
    base = tmp_path_factory.mktemp("dockerd")

    def get(*, mirrors: list[str]) -> harness.DockerDaemon:
        current = state["daemon"]
        if current is not None and current.mirrors == tuple(mirrors):
            return current
        if current is not None:
            current.stop()
        # A fresh root per mirror list: no image pulled before can hide a refusal.
        root = Path(base) / f"d{secrets.token_hex(3)}"
        state["daemon"] = harness.start_dockerd(root, mirrors=mirrors)
        return state["daemon"]

    try:
        yield get
    finally:
        if state["daemon"] is not None:
            state["daemon"].stop()


def pytest_report_header(config) -> str:
    return f"e2e: machine {platform.machine()}, uid {os.geteuid()}"
