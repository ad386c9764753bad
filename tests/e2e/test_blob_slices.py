"""The blob cache in slices, and its digest check, against an upstream like Docker Hub.

The harness's edges cut blobs into 1 MB slices, so these blobs of a few MB have several.
Upstream reads are counted on the fake upstream's blob store (bytes it sent, in blob sizes)."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edge.blob_verify import cache_key, cache_path, cached_body
from edge.state import verify_stats_read
from tests.conftest import require
from tests.e2e import harness
from tests.e2e.test_blob_cache import blob_get
from tests.e2e.test_blob_cache import tenant_on as tenant_on  # a fixture, used by name
from tests.e2e.upstream_auth import HOLD_AFTER, start_auth_upstream

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

MB = 1024 * 1024
OTHER = "ghcr.io"
OTHERS: dict[int, object] = {}  # the edge's other registry's upstream, by id(edge)


def _image(name: str, size: int) -> harness.Image:
    return harness.make_image(files={f"{name}.bin": os.urandom(size)}, note=name)


IMAGES = {
    name: (lambda name=name, size=size: _image(name, size))
    for name, size in {
        "bad": 3 * MB,
        "badrange": 3 * MB,
        "resume": 3 * MB,
        "midcut": 3 * MB,
        "joiners": 6 * MB,
        "exact": 2 * MB,
        "manyslices": 5 * MB,
        "streamed": 3 * MB,
        "spooled": 3 * MB,
        "badjoin": 2 * MB,
        "partial": 3 * MB,
        "badpartial": 3 * MB,
    }.items()
}


@pytest.fixture(scope="module")
def auth_world():
    """(images, upstream with tokens and redirects, an edge pulling from it); the fixture
    name is the one test_blob_cache's tenant_on expects."""
    for tool in ("docker-registry", "nginx", "openssl"):
        require(harness.which(tool) is not None, f"{tool} is not installed")
    from django.conf import settings

    workdir = harness.worker_readable_dir("e2e-slices-")
    images = {name: make() for name, make in IMAGES.items()}
    upstream = start_auth_upstream(workdir / "upstream", images)
    # Another registry (UPSTREAMS ghcr.io), with token auth and redirects too.
    other_images = {"nsbad": _image("nsbad", 3 * MB)}
    images.update(other_images)
    try:
        other = start_auth_upstream(workdir / "other", other_images)
    except Exception:
        upstream.stop()
        raise
    try:
        edge = harness.start_edge(
            workdir,
            upstream_url=upstream.url,
            upstreams={OTHER: other.url},
            name=settings.EDGE_NAME,
            mirror_domain=settings.MIRROR_DOMAIN,
        )
    except Exception:
        upstream.stop()
        other.stop()
        raise
    OTHERS[id(edge)] = other
    yield images, upstream, edge
    edge.stop()
    upstream.stop()
    other.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def slice_files(edge: harness.Edge, blob: harness.Blob) -> list:
    """The cache files of the blob's slices that exist."""
    hexdigest = blob.digest.split(":", 1)[1]
    paths = [
        cache_path(edge.params.cache_dir, cache_key(hexdigest, start, MB))
        for start in range(0, blob.size, MB)
    ]
    return [p for p in paths if p.exists()]


def fill_counts(edge: harness.Edge) -> dict[str, int]:
    """The digest check's counters (/@stats, as the edge's gate sync reads them)."""
    return dict(verify_stats_read(edge.params.verify_listen).counts)


def counted(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before.get(name, 0) for name in after}


def get_or_cut(edge, label, path, **kw) -> harness.Response | None:
    """The response, or None when the body was cut short (never a complete wrong body)."""
    try:
        return edge.get(label, path, **kw)
    except (http.client.IncompleteRead, ConnectionError):
        return None


def test_slices_are_cached_under_the_digest_and_range_keys(auth_world, tenant_on):
    images, upstream, edge = auth_world
    tenant = tenant_on(edge)
    layer = images["exact"].layers[0]
    resp = blob_get(edge, tenant.label, "exact", layer)
    assert resp.status == 200 and harness.sha256_digest(resp.body) == layer.digest
    files = slice_files(edge, layer)
    assert len(files) == -(-layer.size // MB)  # every slice, where the digest check looks
    assert b"".join(cached_body(f, min(MB, layer.size - i * MB)) for i, f in enumerate(files)) == (
        resp.body
    )
    assert upstream.store.reads(layer.digest) == 1
    # The tenant's label (a mirror address, a credential) never leaves the edge.
    assert upstream.store.tenant_headers and set(upstream.store.tenant_headers) == {""}


def test_corrupted_upstream_blob_is_never_served_whole_and_every_slice_is_evicted(
    auth_world, tenant_on
):
    images, upstream, edge = auth_world
    first, second = tenant_on(edge, n=2)
    layer = images["bad"].layers[0]
    path = f"/v2/library/bad/blobs/{layer.digest}"
    upstream.store.corrupt.add(layer.digest.split(":", 1)[1])
    assert get_or_cut(edge, first.label, path) is None  # cut at the last slice
    assert slice_files(edge, layer) == []  # the slices already cached were evicted
    # A second client, right away: the edge refuses (502) rather than read it again.
    again = get_or_cut(edge, second.label, path)
    assert again is None or again.status == 502
    reads = upstream.store.reads(layer.digest)
    assert reads <= 1.0001
    # Once the upstream serves the right bytes, a retry (after the bad record expires) fills.
    upstream.store.corrupt.clear()
    deadline = time.monotonic() + 40
    while True:
        resp = get_or_cut(edge, second.label, path)
        if resp is not None and resp.status == 200:
            break
        assert resp is None or resp.status == 502
        assert time.monotonic() < deadline, "the blob was never served after the fix"
        time.sleep(0.5)
    assert harness.sha256_digest(resp.body) == layer.digest
    assert len(slice_files(edge, layer)) == -(-layer.size // MB)
    # Nobody got the wrong blob whole: one 200 of full length in the log, the fixed one. The
    # cut answer is logged with what was sent (nginx calls it complete: its last slice ended).
    lines = [x for x in edge.log_lines() if x["uri"] == path and x["status"] == 200]
    whole = [x for x in lines if x["body_bytes_sent"] == layer.size]
    assert len(whole) == 1 and whole[0]["tenant"] == second.label
    cut = [x for x in lines if x["tenant"] == first.label]
    assert len(cut) == 1 and cut[0]["body_bytes_sent"] < layer.size


def test_corrupted_blob_resumed_from_the_middle_is_checked_whole(auth_world, tenant_on):
    images, upstream, edge = auth_world
    tenant = tenant_on(edge)
    layer = images["badrange"].layers[0]
    path = f"/v2/library/badrange/blobs/{layer.digest}"
    upstream.store.corrupt.add(layer.digest.split(":", 1)[1])
    # Only the last slices are filled; the check reads the first ones upstream, uncached.
    assert get_or_cut(edge, tenant.label, path, headers=[("Range", f"bytes={2 * MB}-")]) is None
    assert slice_files(edge, layer) == []
    upstream.store.corrupt.clear()


def test_resumed_download_of_a_cached_blob_reads_nothing_upstream(auth_world, tenant_on):
    images, upstream, edge = auth_world
    tenant = tenant_on(edge)
    layer = images["resume"].layers[0]
    path = f"/v2/library/resume/blobs/{layer.digest}"
    full = blob_get(edge, tenant.label, "resume", layer)
    assert full.status == 200 and upstream.store.reads(layer.digest) == 1
    gets = len(upstream.store.gets)
    offset = MB + 12345
    resp = edge.get(tenant.label, path, headers=[("Range", f"bytes={offset}-")])
    assert resp.status == 206 and resp.body == full.body[offset:]
    assert resp.headers["Content-Range"] == f"bytes {offset}-{layer.size - 1}/{layer.size}"
    assert len(upstream.store.gets) == gets and upstream.store.reads(layer.digest) == 1
    # The tenant is charged the body of its own answer: the range, not the blob.
    line = [x for x in edge.log_lines() if x["uri"] == path and x["status"] == 206]
    assert [x["body_bytes_sent"] for x in line] == [layer.size - offset]
    assert line[0]["tenant"] == tenant.label


def test_a_slice_cut_short_upstream_is_read_on_from_where_it_stopped(auth_world, tenant_on):
    images, upstream, edge = auth_world
    tenant = tenant_on(edge)
    layer = images["midcut"].layers[0]
    path = f"/v2/library/midcut/blobs/{layer.digest}"
    hexdigest = layer.digest.split(":", 1)[1]
    upstream.store.cut_at[hexdigest] = MB  # the second slice's first fetch stops half-way
    before = fill_counts(edge)
    # The fill goes on from the byte the upstream stopped at: the client never sees the cut,
    # and nothing is read twice.
    first = edge.get(tenant.label, path)
    assert hexdigest not in upstream.store.cut_at  # the cut happened
    assert first.status == 200 and harness.sha256_digest(first.body) == layer.digest
    assert upstream.store.reads(layer.digest) == 1
    assert (hexdigest, f"bytes={MB + MB // 2}-{2 * MB - 1}") in upstream.store.gets
    new = counted(before, fill_counts(edge))
    assert new["resumes"] == 1 and new["cut"] == 0 and new["digest_mismatches"] == 0
    resp = edge.get(tenant.label, path)
    assert resp.status == 200 and harness.sha256_digest(resp.body) == layer.digest
    hit = edge.get(tenant.label, path)
    assert hit.headers["X-Edge-Cache"] == "HIT" and hit.body == resp.body
    assert len(slice_files(edge, layer)) == -(-layer.size // MB)


def test_one_client_aborting_mid_fill_while_five_others_continue(auth_world, tenant_on):
    images, upstream, edge = auth_world
    tenants = tenant_on(edge, n=6)
    layer = images["joiners"].layers[0]
    path = f"/v2/library/joiners/blobs/{layer.digest}"
    upstream.store.slow[layer.digest.split(":")[1]] = 0.05  # ~1.2 s for the 6 MB
    aborted = threading.Event()

    def abort() -> None:
        with socket.create_connection(("127.0.0.1", edge.port), 30) as s:
            request = f"GET {path} HTTP/1.1\r\nHost: {edge.host(tenants[0].label)}\r\n\r\n"
            s.sendall(request.encode())
            got = 0
            while got < MB:
                chunk = s.recv(65536)
                assert chunk
                got += len(chunk)
        aborted.set()

    def full(i: int) -> bytes:
        return edge.get(tenants[i].label, path, timeout=60).body

    with ThreadPoolExecutor(6) as pool:
        quitter = pool.submit(abort)
        bodies = list(pool.map(full, range(1, 6)))
        quitter.result()
    assert aborted.is_set()
    assert all(harness.sha256_digest(b) == layer.digest for b in bodies)
    assert upstream.store.reads(layer.digest) == 1  # one fill, slice by slice, for all
    lines = [x for x in edge.log_lines() if x["uri"] == path]
    by_tenant = {x["tenant"]: x for x in lines}
    for t in tenants[1:]:
        assert by_tenant[t.label]["body_bytes_sent"] == layer.size
    assert by_tenant[tenants[0].label]["completion"] == ""


def test_the_digest_check_refuses_what_is_not_a_blob_fill(auth_world):
    _, upstream, edge = auth_world
    port = int(edge.params.verify_listen.rsplit(":", 1)[1])
    gets = len(upstream.store.gets)
    for path in (
        "/",
        "/v2/",
        "/v2/library/x/manifests/latest",
        "/v2/library/x/blobs/sha256:" + "A" * 64,
        "/v2/library/x/blobs/sha256:" + "a" * 63,
        "/v2/../../etc/passwd/blobs/sha256:" + "a" * 64,
        "/v2/library/x/blobs/sha256:" + "a" * 64 + "/../../x",
    ):
        assert harness.request(port, "GET", path, host="x").status == 404, path
    assert harness.request(port, "HEAD", "/v2/library/x/blobs/sha256:" + "a" * 64).status == 405
    assert len(upstream.store.gets) == gets  # nothing reached the upstream


def test_cache_file_bodies_are_read_only_when_whole(tmp_path):
    key = cache_key("ab" * 32, MB, MB)
    assert key == f"sha256:{'ab' * 32}bytes={MB}-{2 * MB - 1}"
    path = cache_path(tmp_path, key)
    assert path.parent.parent.parent == tmp_path and len(path.name) == 32
    assert path.parent.name == path.name[-4:-2] and path.parent.parent.name == path.name[-2:]
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x05" * 40 + b"\nKEY: " + key.encode() + b"\nHTTP/1.1 206\r\n\r\nbody")
    assert cached_body(path, 4) == b"body"
    assert cached_body(path, 5) is None  # a short entry is not trusted
    path.write_bytes(b"no key line here\r\n\r\nbody")
    assert cached_body(path, 4) is None
    assert cached_body(tmp_path / "missing", 4) is None


def test_a_tenants_miss_rate_counts_blobs_not_slices(auth_world, tenant_on):
    images, upstream, edge = auth_world
    # Another nginx from the template whose tenants may miss twice in all (no refill to speak
    # of), sharing the registry and token helper.
    workdir = harness.worker_readable_dir("e2e-missrate-")
    small = harness.start_sibling_edge(edge, workdir, tenant_miss_rate="1r/m", tenant_miss_burst=1)
    try:
        tenant = tenant_on(small)
        layer = images["manyslices"].layers[0]
        resp = blob_get(small, tenant.label, "manyslices", layer)  # 6 slices, one miss
        assert resp.status == 200 and harness.sha256_digest(resp.body) == layer.digest
        assert upstream.store.reads(layer.digest) == 1
        # The limit still holds per blob: two more cold blobs exceed a burst of 1.
        statuses = [
            blob_get(small, tenant.label, name, images[name].layers[0]).status
            for name in ("badrange", "joiners")
        ]
        assert 429 in statuses, statuses
    finally:
        small.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_a_corrupted_blob_of_another_registry_goes_through_slices_and_the_digest_check(
    auth_world, tenant_on
):
    """?ns=<registry>: the fill passes the digest check (the query and the secret forwarded to
    the fetch server, which routes by ns=), is cut and evicted when bad, and, once right, is
    cached under the digest and range keys that every registry shares."""
    images, upstream, edge = auth_world
    other = OTHERS[id(edge)]
    first, second = tenant_on(edge, n=2)
    layer = images["nsbad"].layers[0]
    hexdigest = layer.digest.split(":", 1)[1]
    path = f"/v2/library/nsbad/blobs/{layer.digest}"
    hub_gets = len(upstream.store.gets)
    other.store.corrupt.add(hexdigest)
    assert get_or_cut(edge, first.label, f"{path}?ns={OTHER}") is None  # cut at its end
    assert slice_files(edge, layer) == []
    assert other.store.reads(layer.digest) <= 1.0001
    other.store.corrupt.clear()
    deadline = time.monotonic() + 40
    while True:  # the bad record expires, then the right bytes fill
        resp = get_or_cut(edge, second.label, f"{path}?ns={OTHER}")
        if resp is not None and resp.status == 200:
            break
        assert resp is None or resp.status == 502
        assert time.monotonic() < deadline, "the blob was never served after the fix"
        time.sleep(0.5)
    assert harness.sha256_digest(resp.body) == layer.digest
    assert resp.headers["OCI-Namespace"] == OTHER
    assert len(slice_files(edge, layer)) == -(-layer.size // MB)
    # Docker Hub's upstream was never asked; the same digest by the path prefix is a hit.
    prefixed = edge.get(second.label, f"/v2/{OTHER}/library/nsbad/blobs/{layer.digest}")
    assert prefixed.status == 200 and prefixed.headers["X-Edge-Cache"] == "HIT"
    assert prefixed.body == resp.body
    assert len(upstream.store.gets) == hub_gets
    # Nobody got the wrong blob whole; the lines name the registry.
    lines = [x for x in edge.log_lines() if x["uri"].startswith(path) and x["status"] == 200]
    assert {x["registry"] for x in lines} == {OTHER}
    whole = [x for x in lines if x["body_bytes_sent"] == layer.size]
    assert [x["tenant"] for x in whole] == [second.label]
    assert [x["body_bytes_sent"] < layer.size for x in lines if x["tenant"] == first.label] == [
        True
    ]


class Reader(threading.Thread):
    """One client reading a blob as it comes, so a test can see how far it got."""

    def __init__(self, edge, label: str, path: str) -> None:
        super().__init__(daemon=True)
        self.edge, self.label, self.path = edge, label, path
        self.body = bytearray()
        self.headers: dict[str, str] = {}
        self.length = -1
        self.cut = False

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.edge.port, timeout=90)
        try:
            conn.request("GET", self.path, headers={"Host": self.edge.host(self.label)})
            resp = conn.getresponse()
            self.headers = dict(resp.getheaders())
            self.length = int(resp.getheader("Content-Length", "-1"))
            while chunk := resp.read1(65536):
                self.body += chunk
            self.cut = len(self.body) != self.length
        except (http.client.HTTPException, OSError):
            self.cut = True
        finally:
            conn.close()

    def wait_for(self, nbytes: int, timeout: float = 30) -> bool:
        """Whether the client got more than `nbytes` of the body within `timeout`."""
        deadline = time.monotonic() + timeout
        while len(self.body) <= nbytes and self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        return len(self.body) > nbytes


@pytest.fixture
def verifier_memory(auth_world):
    """Restart the edge's digest check with another --memory; the default one again after."""
    _, _, edge = auth_world
    log = edge.params.run_dir / "verify-memory.log"

    def restart(memory: str) -> None:
        edge.verify.stop()
        edge.verify = harness.start_verifier(edge.params, log, memory=memory)

    yield restart
    restart("")


@pytest.mark.parametrize(
    ("name", "memory", "spools"),
    [("streamed", "", 0), ("spooled", "0", 1)],
    ids=["fills-in-memory", "fills-spooled-past-the-memory-budget"],
)
def test_a_client_joining_a_cold_fill_streams_it_while_the_slice_arrives(
    auth_world, tenant_on, verifier_memory, name, memory, spools
):
    images, upstream, edge = auth_world
    if memory:
        verifier_memory(memory)
    first, second = tenant_on(edge, n=2)
    layer = images[name].layers[0]
    path = f"/v2/library/{name}/blobs/{layer.digest}"
    hexdigest = layer.digest.split(":", 1)[1]
    # The upstream sends the first 512 KiB of the first slice, then waits for the test.
    released = threading.Event()
    upstream.store.hold[hexdigest] = (0, released)
    before = fill_counts(edge)
    starter, joiner = Reader(edge, first.label, path), Reader(edge, second.label, path)
    try:
        starter.start()
        assert starter.wait_for(0), "the client that started the fill got nothing"
        joiner.start()
        # The slice is still arriving (the upstream holds it): the joiner streams what is in.
        assert joiner.wait_for(0), "a client joining the fill waited for the whole slice"
        assert upstream.store.bytes_out[hexdigest] == HOLD_AFTER
        assert len(spooled(edge)) == spools  # one fill for both, spooled past the budget
    finally:
        released.set()
    starter.join(60)
    joiner.join(60)
    for client in (starter, joiner):
        assert not client.cut and harness.sha256_digest(bytes(client.body)) == layer.digest
        assert "X-Edge-Joined" not in client.headers  # the edge's own header stays inside
    assert upstream.store.reads(layer.digest) == 1  # one read, shared
    assert len(slice_files(edge, layer)) == -(-layer.size // MB)
    # What operators see: the joiner joined; with no memory budget every fill spooled, with
    # the default one none did.
    new = counted(before, fill_counts(edge))
    assert new["joins"] >= 1 and new["cut"] == 0
    assert new["spooled"] == (new["fills"] if spools else 0)
    # Each tenant is charged what it was sent.
    lines = {x["tenant"]: x for x in edge.log_lines() if x["uri"] == path}
    assert lines[first.label]["body_bytes_sent"] == layer.size
    assert lines[second.label]["body_bytes_sent"] == layer.size
    # The fills' spool files are closed once their grace is over: nothing piles up on disk.
    deadline = time.monotonic() + 30
    while spooled(edge) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert spooled(edge) == []


def spooled(edge) -> list[str]:
    """The unlinked files the digest check holds open (its fills' spools)."""
    fds = Path(f"/proc/{edge.verify.pid}/fd")
    out = []
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.endswith("(deleted)"):
            out.append(target)
    return out


def test_a_corrupted_last_slice_cuts_every_client_that_joined_it(auth_world, tenant_on):
    images, upstream, edge = auth_world
    first, second = tenant_on(edge, n=2)
    layer = images["badjoin"].layers[0]
    path = f"/v2/library/badjoin/blobs/{layer.digest}"
    hexdigest = layer.digest.split(":", 1)[1]
    upstream.store.corrupt.add(hexdigest)  # the changed byte is in the middle: the last slice
    released = threading.Event()
    upstream.store.hold[hexdigest] = (MB, released)
    before = fill_counts(edge)
    starter, joiner = Reader(edge, first.label, path), Reader(edge, second.label, path)
    try:
        starter.start()
        assert starter.wait_for(MB), "the starter never reached the last slice"
        joiner.start()
        assert joiner.wait_for(MB), "the joiner never joined the last slice's fill"
    finally:
        released.set()
    starter.join(60)
    joiner.join(60)
    # Nobody got the wrong blob whole, and it was read once.
    assert starter.cut and joiner.cut
    assert len(starter.body) < layer.size and len(joiner.body) < layer.size
    assert upstream.store.reads(layer.digest) <= 1.0001
    assert slice_files(edge, layer) == []
    # What operators see (accel_edge_digest_mismatches_total): one wrong blob, its fill cut.
    new = counted(before, fill_counts(edge))
    assert new["digest_mismatches"] == 1 and new["cut"] >= 1 and new["joins"] >= 1
    upstream.store.corrupt.discard(hexdigest)


def test_a_range_that_ends_before_the_blob_is_answered_once_the_blob_is_checked(
    auth_world, tenant_on
):
    images, upstream, edge = auth_world
    tenant = tenant_on(edge)
    layer = images["partial"].layers[0]
    path = f"/v2/library/partial/blobs/{layer.digest}"
    # Cold: the first byte waits for the whole blob, read once and checked, then the range.
    resp = edge.get(tenant.label, path, headers=[("Range", f"bytes={MB + 5}-{MB + 104}")])
    assert resp.status == 206, resp.status
    assert resp.headers["Content-Range"] == f"bytes {MB + 5}-{MB + 104}/{layer.size}"
    assert upstream.store.reads(layer.digest) == 1
    assert len(slice_files(edge, layer)) == -(-layer.size // MB)  # all of it, checked
    assert resp.body == layer.data[MB + 5 : MB + 105]
    full = edge.get(tenant.label, path)
    assert full.body == layer.data
    # Warm: the other forms, from the cache, nothing more read upstream.
    gets = len(upstream.store.gets)
    for header, status, want in (
        ("bytes=-100", 206, full.body[-100:]),  # the last 100 bytes
        (f"bytes=0-{10 * layer.size}", 206, full.body),  # past the end: to the end
        ("bytes=0-0,5-6", 200, full.body),  # several ranges: the whole blob, as HTTP allows
        ("items=1-2", 200, full.body),  # not bytes: the whole blob
    ):
        got = edge.get(tenant.label, path, headers=[("Range", header)])
        assert (got.status, got.body) == (status, want), header
    for header in ("bytes=5-2", f"bytes={layer.size}-{layer.size + 5}", "bytes=-0"):
        got = edge.get(tenant.label, path, headers=[("Range", header)])
        assert got.status == 416 and got.body == b"", header
        assert got.headers["Content-Range"] == f"bytes */{layer.size}", header
    assert len(upstream.store.gets) == gets
    # Each answer is charged what it carried.
    lines = [x for x in edge.log_lines() if x["uri"] == path and x["tenant"] == tenant.label]
    assert [x["body_bytes_sent"] for x in lines if x["status"] == 206][:1] == [100]
    assert sum(x["body_bytes_sent"] for x in lines if x["status"] == 416) == 0


def test_a_range_of_a_corrupted_blob_is_never_served(auth_world, tenant_on):
    images, upstream, edge = auth_world
    first, second = tenant_on(edge, n=2)
    layer = images["badpartial"].layers[0]
    path = f"/v2/library/badpartial/blobs/{layer.digest}"
    upstream.store.corrupt.add(layer.digest.split(":", 1)[1])
    before = fill_counts(edge)
    try:
        # The first slice is right; the blob is not: not one byte of it goes out.
        resp = edge.get(first.label, path, headers=[("Range", "bytes=0-99")])
        assert resp.status == 502 and layer.digest.encode() not in resp.body
        assert slice_files(edge, layer) == []  # every slice evicted
        again = edge.get(second.label, path, headers=[("Range", "bytes=0-99")])
        assert again.status == 502
        assert upstream.store.reads(layer.digest) <= 1.0001
        assert counted(before, fill_counts(edge))["digest_mismatches"] == 1
        lines = [x for x in edge.log_lines() if x["uri"] == path]
        assert {x["status"] for x in lines} == {502}
    finally:
        upstream.store.corrupt.discard(layer.digest.split(":", 1)[1])
