"""The edge's blob cache against an upstream that behaves like Docker Hub (bearer tokens, 307
to a blob store): one upstream read per blob whatever the concurrency, nothing wrong ever
cached, HEAD never downloads, LRU eviction within the size limit, exact per-tenant bytes."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from accelerator.services import tenant_start
from edge.token_helper import TokenCache, TokenError, parse_challenge, repo_from_uri
from tests.conftest import require
from tests.e2e import harness
from tests.e2e.conftest import sync_gate
from tests.e2e.upstream_auth import start_auth_upstream

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

MB = 1024 * 1024


def _image(name: str, size: int) -> harness.Image:
    import os

    return harness.make_image(files={f"{name}.bin": os.urandom(size)}, note=name)


IMAGES = {
    "sk10": lambda: _image("sk10", 6 * MB),
    "dk10": lambda: _image("dk10", 4 * MB),
    "abort": lambda: _image("abort", 12 * MB),
    "trunc": lambda: _image("trunc", 2 * MB),
    "alwayscut": lambda: _image("alwayscut", 2 * MB),
    "headonly": lambda: _image("headonly", 2 * MB),
    "bytes": lambda: _image("bytes", 3 * MB),
    "nohelper": lambda: _image("nohelper", 1 * MB),
    "nolength": lambda: _image("nolength", 1 * MB),
    "authz": lambda: _image("authz", 1 * MB),
    **{f"lru{i}": (lambda i=i: _image(f"lru{i}", 1 * MB)) for i in range(1, 5)},
}


@pytest.fixture(scope="module")
def auth_world():
    """(images, upstream with tokens and redirects, an edge pulling from it)."""
    for tool in ("docker-registry", "nginx", "openssl"):
        require(harness.which(tool) is not None, f"{tool} is not installed")
    from django.conf import settings

    workdir = harness.worker_readable_dir("e2e-authedge-")
    images = {name: make() for name, make in IMAGES.items()}
    upstream = start_auth_upstream(workdir / "upstream", images)
    try:
        edge = harness.start_edge(
            workdir,
            upstream_url=upstream.url,
            name=settings.EDGE_NAME,
            mirror_domain=settings.MIRROR_DOMAIN,
        )
    except Exception:
        upstream.stop()
        raise
    yield images, upstream, edge
    edge.stop()
    upstream.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def tenant_on(auth_world, hosts, django_user_model):
    """A new tenant made through tenant_start, synced into the given edge, host resolvable."""

    def make(target: harness.Edge, n: int = 1):
        tenants = []
        for _ in range(n):
            user = django_user_model.objects.create_user(
                email=f"c{time.monotonic_ns()}@example.com", password="x-123456789"
            )
            tenants.append(tenant_start(user=user))
        sync_gate(target)
        for t in tenants:
            hosts.add(target.host(t.label, port=False))
        return tenants if n > 1 else tenants[0]

    return make


def blob_get(edge, label, image_name, blob, **kw):
    return edge.get(label, f"/v2/library/{image_name}/blobs/{blob.digest}", **kw)


def test_ten_concurrent_skopeo_pulls_read_each_blob_once(auth_world, tenant_on, skopeo):
    require(harness.which("skopeo") is not None, "skopeo is not installed")
    images, upstream, edge = auth_world
    tenants = tenant_on(edge, n=10)  # ten different tenants pulling the same image at once
    image = images["sk10"]

    def pull(i):
        sk = harness.Skopeo()
        try:
            result, dest = sk.copy_to_dir(
                f"docker://{edge.host(tenants[i].label)}/library/sk10:latest", "x"
            )
            assert result.returncode == 0, result.stderr
            harness.verify_dir_copy(dest, image)
            return True
        finally:
            sk.cleanup()

    with ThreadPoolExecutor(10) as pool:
        assert all(pool.map(pull, range(10)))
    for blob in image.blobs:
        assert upstream.store.reads(blob.digest) == 1, blob.digest
    # Tokens: one per repository scope from the edge's helper, cached for the rest.
    assert upstream.tokens.helper_requests("repository:library/sk10:pull") == 1
    lines = [x for x in edge.log_lines() if x["uri"].endswith(image.layers[0].digest)]
    assert len(lines) == 10
    assert {x["body_bytes_sent"] for x in lines} == {image.layers[0].size}
    assert {x["tenant"] for x in lines} == {t.label for t in tenants}


def test_docker_and_skopeo_pulling_together_read_each_blob_once(
    auth_world, tenant_on, docker_daemon
):
    require(harness.which("skopeo") is not None, "skopeo is not installed")
    images, upstream, edge = auth_world
    tenants = tenant_on(edge, n=10)
    daemon = docker_daemon(mirrors=[edge.url(tenants[0].label)])
    image = images["dk10"]

    def docker_pull():
        result = daemon.cli("pull", "dk10")
        assert result.returncode == 0, result.stderr
        return True

    def skopeo_pull(i):
        sk = harness.Skopeo()
        try:
            result, dest = sk.copy_to_dir(
                f"docker://{edge.host(tenants[i].label)}/library/dk10:latest", "x"
            )
            assert result.returncode == 0, result.stderr
            harness.verify_dir_copy(dest, image)
            return True
        finally:
            sk.cleanup()

    with ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(docker_pull)] + [pool.submit(skopeo_pull, i) for i in range(1, 10)]
        assert all(f.result() for f in futures)
    inspect = daemon.cli("image", "inspect", "--format", "{{json .RepoDigests}}", "dk10")
    assert image.digest in inspect.stdout
    for blob in image.blobs:
        assert upstream.store.reads(blob.digest) == 1, blob.digest


def test_client_aborting_mid_fill_does_not_spoil_the_entry(auth_world, tenant_on):
    images, upstream, edge = auth_world
    tenant = tenant_on(edge)
    layer = images["abort"].layers[0]
    upstream.store.slow[layer.digest.split(":")[1]] = 0.02  # ~1 s for the whole blob
    path = f"/v2/library/abort/blobs/{layer.digest}"
    with socket.create_connection(("127.0.0.1", edge.port), 10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {edge.host(tenant.label)}\r\n\r\n".encode())
        got = 0
        while got < MB:
            chunk = s.recv(65536)
            assert chunk
            got += len(chunk)
    resp = edge.get(tenant.label, path)
    assert resp.status == 200 and harness.sha256_digest(resp.body) == layer.digest
    again = edge.get(tenant.label, path)
    assert again.headers["X-Edge-Cache"] == "HIT" and again.body == resp.body
    assert upstream.store.reads(layer.digest) == 1  # nginx finished the fill for the cache
    lines = [x for x in edge.log_lines() if x["uri"] == path]
    aborted = [x for x in lines if x["completion"] == ""]
    assert len(aborted) == 1 and aborted[0]["body_bytes_sent"] < layer.size


def test_truncated_upstream_body_is_read_on_and_never_cached_short(auth_world, tenant_on):
    images, upstream, edge = auth_world
    tenant = tenant_on(edge)
    layer = images["trunc"].layers[0]
    hexdigest = layer.digest.split(":")[1]
    upstream.store.truncate_next.add(hexdigest)
    # The upstream stops half-way; the edge reads on from there: the right bytes, once.
    resp = blob_get(edge, tenant.label, "trunc", layer)
    assert hexdigest not in upstream.store.truncate_next  # the cut happened
    assert resp.status == 200 and harness.sha256_digest(resp.body) == layer.digest
    assert upstream.store.reads(layer.digest) == 1
    hit = blob_get(edge, tenant.label, "trunc", layer)
    assert hit.headers["X-Edge-Cache"] == "HIT" and hit.body == resp.body


def test_an_upstream_that_keeps_cutting_gives_a_cut_download_never_a_cached_one(
    auth_world, tenant_on
):
    images, upstream, edge = auth_world
    tenant = tenant_on(edge)
    layer = images["alwayscut"].layers[0]
    hexdigest = layer.digest.split(":")[1]
    upstream.store.truncate_all.add(hexdigest)
    try:
        # Read on three times, cut each time: the client's download ends short, never whole.
        with pytest.raises(http.client.IncompleteRead):
            blob_get(edge, tenant.label, "alwayscut", layer)
    finally:
        upstream.store.truncate_all.discard(hexdigest)
    resp = blob_get(edge, tenant.label, "alwayscut", layer)
    assert resp.status == 200 and harness.sha256_digest(resp.body) == layer.digest
    assert resp.headers["X-Edge-Cache"] == "MISS"  # nothing of the cut answers was kept


def test_body_without_content_length_is_served_but_never_cached(auth_world, tenant_on):
    images, upstream, edge = auth_world
    tenant = tenant_on(edge)
    layer = images["nolength"].layers[0]
    upstream.store.no_length.add(layer.digest.split(":")[1])
    for _ in range(2):
        resp = blob_get(edge, tenant.label, "nolength", layer)
        assert resp.status == 200 and harness.sha256_digest(resp.body) == layer.digest
        assert resp.headers["X-Edge-Cache"] == "MISS"
    assert upstream.store.reads(layer.digest) == 2


def test_client_credentials_never_reach_the_upstream_or_its_blob_store(auth_world, tenant_on):
    images, upstream, edge = auth_world
    tenant = tenant_on(edge)
    layer = images["authz"].layers[0]
    upstream.store.authorizations.clear()
    resp = blob_get(
        edge, tenant.label, "authz", layer, headers=[("Authorization", "Basic aHViOnNlY3JldA==")]
    )
    assert resp.status == 200 and harness.sha256_digest(resp.body) == layer.digest
    # The blob store got the redirected request with no credentials at all: neither the
    # client's Docker Hub login nor the edge's registry token.
    # One GET per slice of the blob.
    assert len(upstream.store.authorizations) == -(-layer.size // MB)
    assert set(upstream.store.authorizations) == {""}
    assert all("aHViOnNlY3JldA" not in a for a in upstream.tokens.authorizations)


def test_head_on_a_cold_blob_downloads_nothing(auth_world, tenant_on):
    images, upstream, edge = auth_world
    tenant = tenant_on(edge)
    layer = images["headonly"].layers[0]
    files_before = set(edge.cache_files())
    resp = blob_get(edge, tenant.label, "headonly", layer, method="HEAD")
    assert resp.status == 200 and resp.body == b""
    assert int(resp.headers["Content-Length"]) == layer.size
    assert upstream.store.reads(layer.digest) == 0
    assert set(edge.cache_files()) == files_before
    # The event that makes "nothing" mean something: the next GET finds no fill under way or
    # done (a MISS, which waits for any fill in flight under the cache lock) and the blob
    # store has been read once in all, for that GET.
    resp = blob_get(edge, tenant.label, "headonly", layer)
    assert resp.status == 200 and harness.sha256_digest(resp.body) == layer.digest
    assert resp.headers["X-Edge-Cache"] == "MISS"
    assert upstream.store.reads(layer.digest) == 1


def test_tenant_bytes_are_exact_for_misses_and_hits(auth_world, tenant_on):
    images, upstream, edge = auth_world
    first, second = tenant_on(edge, n=2)
    layer = images["bytes"].layers[0]
    assert blob_get(edge, first.label, "bytes", layer).headers["X-Edge-Cache"] == "MISS"
    assert blob_get(edge, second.label, "bytes", layer).headers["X-Edge-Cache"] == "HIT"
    lines = {x["tenant"]: x for x in edge.log_lines() if x["uri"].endswith(layer.digest)}
    assert lines[first.label]["cache"] == "MISS" and lines[second.label]["cache"] == "HIT"
    for line in lines.values():
        assert line["body_bytes_sent"] == layer.size and line["status"] == 200


def test_cache_stays_within_its_size_evicting_least_recently_used(auth_world, tenant_on):
    images, upstream, edge = auth_world
    # A second nginx from the same template with a small cache, same registry and token helper.
    workdir = harness.worker_readable_dir("e2e-lru-")
    small = harness.start_sibling_edge(edge, workdir, cache_max_size="3500k")
    try:
        tenant = tenant_on(small)
        layers = {i: images[f"lru{i}"].layers[0] for i in range(1, 5)}

        def get(i):
            return blob_get(small, tenant.label, f"lru{i}", layers[i]).headers["X-Edge-Cache"]

        assert [get(1), get(2), get(1)] == ["MISS", "MISS", "HIT"]  # 2 is now least recent
        assert [get(3), get(4)] == ["MISS", "MISS"]
        deadline = time.monotonic() + 15
        started = time.monotonic()
        while sum(p.stat().st_size for p in small.cache_files()) > 3500 * 1024:
            assert time.monotonic() < deadline, "the cache manager did not evict"
            time.sleep(0.2)
        print(f"evicted after {time.monotonic() - started:.1f} s")
        assert get(1) == "HIT"
        assert get(2) == "MISS"  # evicted: it was the least recently used
    finally:
        small.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_without_the_token_helper_hits_are_served_and_misses_refused_cleanly(auth_world, tenant_on):
    images, upstream, edge = auth_world
    tenant = tenant_on(edge)
    warm = images["bytes"].layers[0]
    cold = images["nohelper"].layers[0]
    assert blob_get(edge, tenant.label, "bytes", warm).status == 200  # cached now
    edge.token.stop()
    try:
        resp = blob_get(edge, tenant.label, "nohelper", cold)
        assert resp.status == 502
        assert resp.headers.get_all("Docker-Distribution-API-Version") == ["registry/2.0"]
        assert json.loads(resp.body)["errors"][0]["code"] == "UNAVAILABLE"
        hit = blob_get(edge, tenant.label, "bytes", warm)
        assert hit.status == 200 and hit.headers["X-Edge-Cache"] == "HIT"
    finally:
        edge.token = harness.start_token_helper(edge.params, edge.run_dir / "token2.log")
    resp = blob_get(edge, tenant.label, "nohelper", cold)
    assert resp.status == 200 and harness.sha256_digest(resp.body) == cold.digest
    assert upstream.store.reads(cold.digest) == 1


def test_token_cache_per_scope_and_refetch_after_expiry(auth_world):
    _, upstream, _ = auth_world
    cache = TokenCache(upstream.url)
    first = cache.header_for("library/sk10")
    assert first.startswith("Bearer ") and cache.header_for("library/sk10") == first
    assert cache.fetches == 1
    cache.header_for("library/dk10")
    assert cache.fetches == 2  # another repository, another scope
    cache._tokens["repository:library/sk10:pull"].expires = 0  # as if it expired
    cache.header_for("library/sk10")
    assert cache.fetches == 3


def test_token_cache_is_bounded_least_recently_used_out(auth_world):
    _, upstream, _ = auth_world
    cache = TokenCache(upstream.url, max_tokens=3)
    for name in ("a", "b", "c"):
        cache.header_for(f"library/{name}")
    cache.header_for("library/a")  # a is now the most recently used; b the least
    assert cache.fetches == 3
    cache.header_for("library/d")  # one over the bound: b goes
    assert len(cache._tokens) == 3 and "repository:library/b:pull" not in cache._tokens
    cache.header_for("library/a")
    assert cache.fetches == 4  # a was kept
    cache.header_for("library/b")
    assert cache.fetches == 5  # b was fetched again
    assert len(cache._tokens) == 3
    # An expired token is dropped when it is next asked for, not served.
    cache._tokens["repository:library/b:pull"].expires = 0
    cache.header_for("library/b")
    assert cache.fetches == 6 and len(cache._tokens) == 3


def test_token_helper_sends_upstream_credentials_to_the_token_service(auth_world):
    _, upstream, _ = auth_world
    cache = TokenCache(upstream.url, "mirror-bot", "s3cret:pw")
    assert cache.header_for("library/bytes").startswith("Bearer ")
    expected = "Basic " + base64.b64encode(b"mirror-bot:s3cret:pw").decode()
    assert upstream.tokens.authorizations[-1] == expected


def test_token_helper_parsing():
    assert parse_challenge('Bearer realm="https://a/token",service="s",scope="x"') == (
        "bearer",
        {"realm": "https://a/token", "service": "s", "scope": "x"},
    )
    digest = "sha256:" + "a" * 64
    assert repo_from_uri(f"/v2/library/nginx/blobs/{digest}") == "library/nginx"
    assert repo_from_uri(f"/v2/a/b-c/d_e/blobs/{digest}?x=1") == "a/b-c/d_e"
    for bad in ["/v2/Upper/blobs/x", "/v2/../x/blobs/y", "/v2/a//b/blobs/y", "/other", ""]:
        assert repo_from_uri(bad) is None, bad


def test_token_helper_with_unreachable_upstream_answers_503():
    from http.server import ThreadingHTTPServer

    from edge.token_helper import make_handler

    dead = TokenCache(f"http://127.0.0.1:{harness.free_port()}")
    with pytest.raises(TokenError):
        dead.header_for("library/x")
    secret = ("X-Edge-Secret", "s" * 40)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(dead, secret[1]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        digest = "sha256:" + "b" * 64
        uri = ("X-Original-URI", f"/v2/library/x/blobs/{digest}")
        answer = harness.request(port, "GET", "/token", host="t", headers=[uri, secret])
        assert answer.status == 503
        bad = ("X-Original-URI", "/v2/../../etc/blobs/x")
        assert harness.request(port, "GET", "/token", host="t", headers=[bad, secret]).status == 403
    finally:
        server.shutdown()
