"""Wrong input at the edge: pushes, bad Host headers, bad paths, a client that goes away.

Every answer is a clean 4xx with a registry-style JSON body (never a 5xx, never an HTML page),
nothing reaches or changes the registry's storage, and every request is still one parseable
access-log line.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e import harness

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def assert_json_error(raw_or_resp, status: int | tuple[int, ...]) -> dict:
    if isinstance(raw_or_resp, bytes):
        head, _, body = raw_or_resp.partition(b"\r\n\r\n")
        code = int(head.split(b" ", 2)[1])
        headers = head.decode("latin-1").lower()
        assert "docker-distribution-api-version: registry/2.0" in headers, head
        assert "content-type: application/json" in headers, head
    else:
        code, body = raw_or_resp.status, raw_or_resp.body
        assert raw_or_resp.headers.get_all("Docker-Distribution-API-Version") == ["registry/2.0"]
        assert raw_or_resp.headers["Content-Type"].startswith("application/json")
    statuses = status if isinstance(status, tuple) else (status,)
    assert code in statuses, (code, body)
    error = json.loads(body)["errors"][0]
    assert error["code"] and error["message"]
    return error


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_writes_are_refused_and_storage_is_unchanged(edge, upstream, make_tenant, method):
    tenant = make_tenant()
    small = upstream.images["small"]
    # Warm the cache so there is storage to protect.
    assert edge.get(tenant.label, f"/v2/{small.repo}/manifests/{small.tag}").status == 200
    before = snapshot(edge.registry.storage)
    log_before = edge.registry.proc.log_tail(10**9).count(f'"{method} ')
    for path in [
        f"/v2/{small.repo}/blobs/uploads/",
        f"/v2/{small.repo}/manifests/{small.tag}",
        f"/v2/{small.repo}/blobs/{small.image.layers[0].digest}",
        "/v2/",
    ]:
        resp = edge.get(tenant.label, path, method=method, body=b"x" * 4096)
        error = assert_json_error(resp, 405)
        assert "read-only" in error["message"]
        assert resp.headers["Allow"] == "GET, HEAD"
    assert snapshot(edge.registry.storage) == before
    assert edge.registry.proc.log_tail(10**9).count(f'"{method} ') == log_before
    lines = [x for x in edge.log_lines() if x["tenant"] == tenant.label and x["method"] == method]
    assert len(lines) == 4 and {x["status"] for x in lines} == {405}


def test_chunked_push_is_refused(edge, make_tenant):
    tenant = make_tenant()
    raw = harness.raw_request(
        edge.port,
        b"PUT /v2/library/x/manifests/latest HTTP/1.1\r\nHost: "
        + edge.host(tenant.label).encode()
        + b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    assert_json_error(raw, 405)


@pytest.mark.parametrize(
    "request_head, status",
    [
        (b"GET /v2/ HTTP/1.1\r\n", 400),  # HTTP/1.1 without Host
        (b"GET /v2/ HTTP/1.0\r\n", 404),  # HTTP/1.0 without Host: no tenant
        (b"GET /v2/ HTTP/1.1\r\nHost: \r\n", 400),
        (b"GET /v2/ HTTP/1.1\r\nHost: a/b.m.localhost\r\n", 400),
        (b"GET /v2/ HTTP/1.1\r\nHost: a\x00b.m.localhost\r\n", 400),
        (b"GET /v2/ HTTP/1.1\r\nHost: x.m.localhost\r\nHost: y.m.localhost\r\n", 400),
        (b"GET /v2/ HTTP/1.1\r\nHost: [::1\r\n", (400, 404)),
        (b"GET /v2/ HTTP/1.1\r\nHost: " + b"a" * 64 + b".m.localhost\r\n", 404),  # label > 63
        (b"GET /v2/ HTTP/1.1\r\nHost: " + b"a" * 20000 + b".m.localhost\r\n", 400),  # huge
        ("GET /v2/ HTTP/1.1\r\nHost: ab\u00e9cd.m.localhost\r\n".encode(), 404),  # non-ASCII
        ("GET /v2/ HTTP/1.1\r\nHost: \u4f8b\u5b50.m.localhost\r\n".encode(), 404),
        (b"GET /v2/ HTTP/1.1\r\nHost: \xff\xfe.m.localhost\r\n", 404),  # not even UTF-8
        (b"GET /v2/ HTTP/1.1\r\nHost: under_score.m.localhost\r\n", 404),
        (b"GET /v2/ HTTP/1.1\r\nHost: m.localhost\r\n", 404),
        (b"GET /v2/ HTTP/1.1\r\nHost: .m.localhost\r\n", (400, 404)),
        (b"GET /v2/ HTTP/1.1\r\nHost: ..m.localhost\r\n", 400),
        (b"GET http://evil.example/v2/ HTTP/1.1\r\nHost: x.m.localhost\r\n", 404),
        (b"GARBAGE\r\n", 400),
        (b"GET /v2/ HTTP/9.9\r\nHost: x.m.localhost\r\n", (400, 505)),
    ],
)
def test_bad_hosts_and_request_lines_get_clean_json_4xx(edge, request_head, status):
    raw = harness.raw_request(edge.port, request_head + b"Connection: close\r\n\r\n")
    if status == (400, 505) and raw.startswith(b"HTTP/1.1 505"):
        return  # nginx answers an unknown HTTP major version itself, without a body we own
    assert_json_error(raw, status)


def test_uppercase_and_trailing_dot_hosts_reach_the_tenant(edge, make_tenant):
    tenant = make_tenant()
    for host in [
        edge.host(tenant.label).upper(),
        f"{tenant.label}.{edge.mirror_domain}.:{edge.port}",
        f"{tenant.label.upper()}.{edge.mirror_domain}",
    ]:
        assert harness.request(edge.port, "GET", "/v2/", host=host).status == 200, host
    lines = [x for x in edge.log_lines() if x["tenant"] == tenant.label]
    assert len(lines) == 3


def test_over_long_label_is_unknown_and_logged_without_tenant(edge, make_tenant):
    make_tenant()
    host = "a" * 200 + "." + edge.mirror_domain
    resp = harness.request(edge.port, "GET", "/v2/", host=host)
    assert_json_error(resp, 404)
    lines = [x for x in edge.log_lines() if x["host"] == host]
    assert len(lines) == 1 and lines[0]["tenant"] == ""


@pytest.mark.parametrize(
    "path",
    [
        "/v2/../../etc/passwd",
        "/../../../../etc/passwd",
        "/v2/library/accel-small/manifests/../../../../etc/passwd",
        "/v2/library/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/v2/library/accel-small/blobs/..%2f..%2f..%2fetc%2fpasswd",
        "/v2/library/accel-small/blobs/%2E%2E/x",
        "/v2/..",
        "/v2/library/accel-small/tags/list?n=1&last=../../x",
        "/v2/library/\xff\xfe/manifests/latest",
        "/v2/library/accel-small/manifests/latest?x=\x7f",
    ],
)
def test_path_traversal_and_raw_bytes_are_refused(edge, make_tenant, path):
    tenant = make_tenant()
    raw = harness.raw_request(
        edge.port,
        f"GET {path} HTTP/1.1\r\n".encode("latin-1")
        + b"Host: "
        + edge.host(tenant.label).encode()
        + b"\r\nConnection: close\r\n\r\n",
    )
    assert b"root:" not in raw
    assert_json_error(raw, 400)


def test_non_registry_paths_get_json_404(edge, make_tenant):
    tenant = make_tenant()
    for path in ["/", "/index.html", "/v1/_ping", "/@edge-error/400"]:
        resp = edge.get(tenant.label, path)
        assert resp.status == 404, (path, resp.body)
        assert_json_error(resp, 404)


def test_every_log_line_is_valid_json_even_after_garbage(edge, make_tenant):
    tenant = make_tenant()
    close = b"Connection: close\r\n\r\n"
    host = edge.host(tenant.label).encode()
    harness.raw_request(edge.port, b'GET /v2/ HTTP/1.1\r\nHost: "q\\\\.m.localhost\r\n' + close)
    harness.raw_request(edge.port, b'GET /v2/"x HTTP/1.1\r\nHost: ' + host + b"\r\n" + close)
    harness.raw_request(edge.port, b"GET /v2/ HTTP/1.1\r\nHost: \xff\xfe.m.localhost\r\n" + close)
    harness.raw_request(edge.port, b"GET /v2/\xff/x HTTP/1.1\r\nHost: " + host + b"\r\n" + close)
    edge.flush_log()
    for line in edge.access_log.read_bytes().splitlines():
        entry = json.loads(line)  # valid UTF-8 and valid JSON, always
        assert entry["edge"] == edge.name
    mine = [x for x in edge.log_lines() if x["tenant"] == tenant.label]
    assert {(x["uri"], x["status"]) for x in mine} == {('/v2/"x', 404), ("(invalid bytes)", 400)}
    assert "(invalid bytes)" in {x["host"] for x in edge.log_lines() if x["tenant"] == ""}


def test_client_disconnecting_mid_blob(edge, upstream, make_tenant):
    tenant = make_tenant()
    large = upstream.images["large"]
    layer = large.image.layers[0]
    path = f"/v2/{large.repo}/blobs/{layer.digest}"
    with socket.create_connection(("127.0.0.1", edge.port), 10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {edge.host(tenant.label)}\r\n\r\n".encode())
        got = 0
        while got < 1_000_000:
            chunk = s.recv(65536)
            assert chunk
            got += len(chunk)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    # The edge is unharmed: the next download is complete and correct.
    resp = edge.get(tenant.label, path)
    assert resp.status == 200 and harness.sha256_digest(resp.body) == layer.digest
    lines = [x for x in edge.log_lines() if x["tenant"] == tenant.label and x["uri"] == path]
    assert len(lines) == 2
    aborted, complete = sorted(lines, key=lambda x: x["completion"])
    assert aborted["completion"] == "" and aborted["status"] == 200
    assert 0 < aborted["body_bytes_sent"] < layer.size
    assert complete["completion"] == "OK" and complete["body_bytes_sent"] == layer.size


# --- what nginx forwards, seen by a capturing stand-in for the registry ------------------------


class _Capture(BaseHTTPRequestHandler):
    seen: list = []

    def do_GET(self):  # noqa: N802
        type(self).seen.append((self.command, self.path, self.headers.items()))
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def capture_edge(tmp_path_factory):
    from django.conf import settings

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    workdir = harness.worker_readable_dir("e2e-capture-")
    params = harness.edge_params(
        workdir,
        upstream_url="http://127.0.0.1:9",
        name=settings.EDGE_NAME,
        mirror_domain=settings.MIRROR_DOMAIN,
        registry_port=server.server_address[1],
    )
    params.run_dir.mkdir(parents=True, exist_ok=True)
    from edge import render as edge_config

    (params.run_dir / "gate.map").write_text(edge_config.gate_map({"capture2test": "active"})[0])
    nginx = harness.start_nginx(params)
    try:
        yield int(params.listen.rsplit(":", 1)[1])
    finally:
        nginx.stop()
        server.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)


def test_authorization_is_never_forwarded_and_accept_headers_are(capture_edge):
    _Capture.seen.clear()
    accepts = [harness.MT_MANIFEST, harness.MT_LIST, "application/vnd.oci.image.index.v1+json"]
    resp = harness.request(
        capture_edge,
        "GET",
        "/v2/library/x/manifests/latest",
        host=f"capture2test.m.localhost:{capture_edge}",
        headers=[("Authorization", "Basic dXNlcjpodWJwYXNzd29yZA=="), ("Cookie", "a=b")]
        + [("Accept", a) for a in accepts],
    )
    assert resp.status == 200
    assert resp.headers.get_all("Docker-Distribution-API-Version") == ["registry/2.0"]
    [(method, path, headers)] = _Capture.seen
    names = [name.lower() for name, _ in headers]
    assert "authorization" not in names and "cookie" not in names
    # Distribution needs every Accept header separately, or it converts manifests to schema 1.
    assert [v for n, v in headers if n.lower() == "accept"] == accepts
    assert (
        dict((n.lower(), v) for n, v in headers)["host"]
        == f"capture2test.m.localhost:{capture_edge}"
    )
