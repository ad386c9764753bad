"""The parent tier: two child edges whose misses go to a parent edge, nginx to nginx.

A fleet reads the upstream once per blob; only the child that served a tenant writes the
charged line; a parent that is down (or refuses) sends the children straight upstream."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from accelerator.services import tenant_start
from tests.conftest import require
from tests.e2e import harness
from tests.e2e.conftest import sync_gate
from tests.e2e.upstream_auth import start_auth_upstream

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

MB = 1024 * 1024
SECRET = secrets.token_urlsafe(32)


def _image(name: str, size: int) -> harness.Image:
    return harness.make_image(files={f"{name}.bin": os.urandom(size)}, note=name)


IMAGES = {"fleet": 4 * MB, "direct": 2 * MB, "midrun": 6 * MB}
OTHER = "ghcr.io"  # a second registry (UPSTREAMS) on every edge of the fleet
OTHERS: dict[int, object] = {}  # its upstream, by id(parent)


@pytest.fixture(scope="module")
def fleet():
    """(images, upstream, parent, [child1, child2])."""
    for tool in ("docker-registry", "nginx", "openssl"):
        require(harness.which(tool) is not None, f"{tool} is not installed")
    from django.conf import settings

    workdir = harness.worker_readable_dir("e2e-parent-")
    images = {name: _image(name, size) for name, size in IMAGES.items()}
    upstream = start_auth_upstream(workdir / "upstream", images)
    other_images = {"ghfleet": _image("ghfleet", 3 * MB)}
    images.update(other_images)
    other = None
    edges: list[harness.Edge] = []
    try:
        other = start_auth_upstream(workdir / "other", other_images)
        child_listen = f"127.0.0.1:{harness.free_port()}"
        common = {
            "upstream_url": upstream.url,
            "upstreams": {OTHER: other.url},
            "mirror_domain": settings.MIRROR_DOMAIN,
            "parent_secret": SECRET,
        }
        edges.append(
            harness.start_edge(
                workdir / "parent", name="parent", child_listen=child_listen, **common
            )
        )
        for i in (1, 2):
            edges.append(
                harness.start_edge(
                    workdir / f"child{i}",
                    name=f"child{i}",
                    parent_url=f"http://{child_listen}",
                    **common,
                )
            )
        OTHERS[id(edges[0])] = other
        yield images, upstream, edges[0], edges[1:]
    finally:
        for edge in edges:
            edge.stop()
        upstream.stop()
        if other is not None:
            other.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def tenants(fleet, django_user_model):
    """One tenant per child edge, synced into its gate."""
    _, _, _, children = fleet
    made = []
    for child in children:
        user = django_user_model.objects.create_user(
            email=f"p{time.monotonic_ns()}@example.com", password="x-123456789"
        )
        made.append(tenant_start(user=user))
        sync_gate(child)
    return made


def children_log(parent: harness.Edge) -> list[dict]:
    import json

    parent.flush_log()
    path = parent.run_dir / "logs" / "children.log"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_two_children_pulling_cold_at_once_read_the_upstream_once(fleet, tenants):
    images, upstream, parent, children = fleet
    layer = images["fleet"].layers[0]
    path = f"/v2/library/fleet/blobs/{layer.digest}"
    upstream.store.slow[layer.digest.split(":")[1]] = 0.02  # a fill that overlaps

    def pull(i: int) -> bytes:
        child = children[i % 2]
        return child.get(tenants[i % 2].label, path, timeout=60).body

    with ThreadPoolExecutor(6) as pool:
        bodies = list(pool.map(pull, range(6)))
    assert all(harness.sha256_digest(b) == layer.digest for b in bodies)
    assert upstream.store.reads(layer.digest) == 1
    # Each child charged its own tenants, exactly; the parent charged nobody.
    for child, tenant in zip(children, tenants, strict=True):
        lines = [x for x in child.log_lines() if x["uri"] == path]
        assert len(lines) == 3
        assert {(x["tenant"], x["status"], x["body_bytes_sent"]) for x in lines} == {
            (tenant.label, 200, layer.size)
        }
    assert not [x for x in parent.log_lines() if x["uri"] == path]
    # The child named the registry (ns=) for the parent to route by.
    served = [x for x in children_log(parent) if x["uri"] == f"{path}?ns=docker.io"]
    assert served and {x["tenant"] for x in served} == {""}
    assert {x["registry"] for x in served} == {"docker.io"}


def test_a_blob_of_another_registry_goes_through_the_parent_once(fleet, tenants):
    """?ns=<registry> on a child: the parent routes the miss to that registry's upstream (and
    checks its digest), both children share its one read; Docker Hub's upstream is not asked."""
    images, upstream, parent, children = fleet
    other = OTHERS[id(parent)]
    layer = images["ghfleet"].layers[0]
    path = f"/v2/library/ghfleet/blobs/{layer.digest}"
    hub_gets = len(upstream.store.gets)
    other.store.slow[layer.digest.split(":")[1]] = 0.02

    def pull(i: int) -> harness.Response:
        # One child by ns=, the other by the path prefix: the same registry, the same blob.
        uri = (
            f"{path}?ns={OTHER}"
            if i % 2 == 0
            else f"/v2/{OTHER}/library/ghfleet/blobs/{layer.digest}"
        )
        return children[i % 2].get(tenants[i % 2].label, uri, timeout=60)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(pull, range(4)))
    assert all(a.status == 200 for a in answers)
    assert all(harness.sha256_digest(a.body) == layer.digest for a in answers)
    assert other.store.reads(layer.digest) == 1
    assert len(upstream.store.gets) == hub_gets
    served = [x for x in children_log(parent) if x["uri"] == f"{path}?ns={OTHER}"]
    assert served and {x["registry"] for x in served} == {OTHER}
    for child, tenant in zip(children, tenants, strict=True):
        lines = [x for x in child.log_lines() if layer.digest in x["uri"]]
        assert {(x["tenant"], x["registry"], x["body_bytes_sent"]) for x in lines} == {
            (tenant.label, OTHER, layer.size)
        }


def test_the_parent_refuses_an_unknown_registry_with_nothing_dialled(fleet, tenants):
    images, upstream, parent, children = fleet
    other = OTHERS[id(parent)]
    layer = images["direct"].layers[0]
    port = int(parent.params.child_listen.rsplit(":", 1)[1])
    gets = (len(upstream.store.gets), len(other.store.gets))
    # (An empty ns= means Docker Hub, as on any edge.)
    for query in ("?ns=nowhere.example", "?ns=127.0.0.1", "?ns=docker.io%0a", "?ns=a|b"):
        resp = harness.request(
            port,
            "GET",
            f"/v2/library/direct/blobs/{layer.digest}{query}",
            host="parent",
            headers=[("X-Edge-Parent-Secret", SECRET)],
        )
        assert resp.status in (400, 404), (query, resp.status)
        assert layer.data[:64] not in resp.body
    # Through a child, the edge itself refuses it before its fetch path.
    resp = children[0].get(
        tenants[0].label, f"/v2/library/direct/blobs/{layer.digest}?ns=nowhere.example"
    )
    assert resp.status == 404 and b"unknown registry" in resp.body
    assert (len(upstream.store.gets), len(other.store.gets)) == gets


def test_the_parent_refuses_requests_without_the_secret(fleet):
    images, upstream, parent, _ = fleet
    layer = images["direct"].layers[0]
    port = int(parent.params.child_listen.rsplit(":", 1)[1])
    path = f"/v2/library/direct/blobs/{layer.digest}"
    for headers in (
        [],
        [("X-Edge-Parent-Secret", "")],
        [("X-Edge-Parent-Secret", SECRET[:-1])],
        [("X-Edge-Parent-Secret", SECRET + "x")],
        [("X-Edge-Parent-Secret", SECRET.upper() if SECRET.upper() != SECRET else "z" * 43)],
    ):
        resp = harness.request(port, "GET", path, host="parent", headers=headers)
        assert resp.status == 403, headers
    for bad_path in ("/v2/", "/v2/library/direct/manifests/latest", "/../etc/passwd"):
        resp = harness.request(port, "GET", bad_path, host="parent")
        assert resp.status in (400, 404), bad_path
    resp = harness.request(
        port, "POST", path, host="parent", headers=[("X-Edge-Parent-Secret", SECRET)]
    )
    assert resp.status in (403, 405)
    assert upstream.store.reads(layer.digest) == 0  # nothing fetched for any of them


def test_parent_stopped_mid_run_children_resume_from_the_upstream(fleet, tenants):
    images, upstream, parent, children = fleet
    child, tenant = children[0], tenants[0]
    layer = images["midrun"].layers[0]
    path = f"/v2/library/midrun/blobs/{layer.digest}"
    upstream.store.slow[layer.digest.split(":")[1]] = 0.05  # ~1.2 s for the blob
    received = b""
    with socket.create_connection(("127.0.0.1", child.port), 30) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {child.host(tenant.label)}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, received = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        while len(received) < MB:
            chunk = s.recv(65536)
            assert chunk
            received += chunk
        parent.nginx.stop(signal.SIGTERM)  # fast shutdown: the parent's connections are cut
        while chunk := s.recv(1 << 20):
            received += chunk
    if len(received) < layer.size:
        # The download was cut with the parent: resumed as Docker does, with a Range.
        rest = child.get(tenant.label, path, headers=[("Range", f"bytes={len(received)}-")])
        assert rest.status == 206
        received += rest.body
    assert harness.sha256_digest(received) == layer.digest
    # A cold blob with the parent gone: straight from the upstream, once.
    direct = images["direct"].layers[0]
    resp = child.get(tenant.label, f"/v2/library/direct/blobs/{direct.digest}")
    assert resp.status == 200 and harness.sha256_digest(resp.body) == direct.digest
    assert upstream.store.reads(direct.digest) == 1
