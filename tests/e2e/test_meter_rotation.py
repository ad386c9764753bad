"""The meter holds across a rotation, with the real edge (nginx, the gate sync) and ingestion.

nginx stamps a line when the request ends, and serves an old label until its next gate sync:
- a slow download started before "Rotate" and finished after it is charged in full;
- a request on the old address after the rotation, before the gate sync, is charged;
both to the tenant the label was issued to, and staff still see the old label's late traffic.
"""

from __future__ import annotations

import os
import secrets
import socket
import time

import pytest
from django.db.models import Sum

from accelerator.models import RetiredLabel
from accelerator.services import tenant_rotate
from ingest.models import UnknownTraffic
from ingest.services import ingest_edge
from quota.models import UsageBucket
from tests.e2e import harness

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

MiB = 1024 * 1024


def charged_bytes(tenant) -> int:
    return UsageBucket.objects.filter(tenant=tenant).aggregate(b=Sum("bytes"))["b"] or 0


def served_bytes(edge, labels: set[str]) -> int:
    """What the edge served the labels with 200/206, by its own log (the meter's rule)."""
    return sum(
        x["body_bytes_sent"]
        for x in edge.log_lines()
        if x["tenant"] in labels and x["status"] in (200, 206)
    )


@pytest.fixture
def big_blob(upstream):
    """A fresh ~8 MiB layer (random, so gzip keeps its size) in the upstream registry."""
    repo = f"library/accel-rotate-{secrets.token_hex(3)}"
    image = harness.make_image(files={"big.bin": os.urandom(8 * MiB)})
    harness.push_image(upstream.registry.port, repo, "latest", image)
    return repo, image.layers[0]


def _read_headers(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def test_a_slow_download_across_a_rotation_is_charged_in_full(edge, make_tenant, big_blob):
    from edge.gate_sync import gate_sync

    repo, layer = big_blob
    tenant = make_tenant()
    old = tenant.label
    # A client that reads slowly: a small receive buffer, and nothing read while we rotate.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", edge.port))
    try:
        sock.sendall(
            f"GET /v2/{repo}/blobs/{layer.digest} HTTP/1.1\r\n"
            f"Host: {edge.host(old)}\r\nConnection: close\r\n\r\n".encode()
        )
        head, body = _read_headers(sock)
        assert head.startswith(b"HTTP/1.1 200"), head
        while len(body) < 256 * 1024:
            body += sock.recv(16 * 1024)
        assert len(body) < layer.size  # the download is under way

        # "Rotate", and the edge learns it: the old label is refused for new requests, while
        # the old worker keeps serving the download already under way.
        serving = harness.child_pids(edge.nginx.pid)
        tenant = tenant_rotate(tenant=tenant)
        retired_at = RetiredLabel.objects.get(label=old).retired_at.timestamp()
        # Reloads are coalesced (one per gate-sync interval): sync until this one is applied.
        deadline = time.monotonic() + 10
        while not gate_sync(run_dir=edge.run_dir).reloaded:
            assert time.monotonic() < deadline, "the rotation was never reloaded"
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        while edge.get(old, "/v2/").status != 404:
            assert time.monotonic() < deadline, "the edge still answers the old label"
            time.sleep(0.1)
        time.sleep(1.0)

        while chunk := sock.recv(64 * 1024):
            body += chunk
    finally:
        sock.close()
    assert len(body) == layer.size and harness.sha256_digest(body) == layer.digest
    edge.wait_reloaded(serving, timeout=10)  # the old worker wrote its line and left

    lines = [x for x in edge.log_lines() if x["tenant"] == old and "/blobs/" in x["uri"]]
    assert [(x["status"], x["body_bytes_sent"]) for x in lines] == [(200, layer.size)]
    assert lines[0]["ts"] > retired_at  # stamped when it ended: after the rotation
    ingest_edge(edge=edge.name, path=edge.access_log)
    assert charged_bytes(tenant) == served_bytes(edge, {old, tenant.label}) >= layer.size
    # Staff still see the old address in use after its retirement.
    late = UnknownTraffic.objects.get(label=old, retired=True)
    assert late.bytes >= layer.size


def test_requests_on_the_old_address_before_the_gate_sync_are_charged(
    edge, make_tenant, edge_sync, big_blob
):
    repo, layer = big_blob
    tenant = make_tenant()
    old = tenant.label
    tenant = tenant_rotate(tenant=tenant)  # the edge has not synced yet: old still served
    try:
        resp = edge.get(old, f"/v2/{repo}/blobs/{layer.digest}")
        assert resp.status == 200 and len(resp.body) == layer.size
    finally:
        edge_sync()
    assert edge.get(old, "/v2/").status == 404  # refusals are free
    ingest_edge(edge=edge.name, path=edge.access_log)
    assert charged_bytes(tenant) == served_bytes(edge, {old, tenant.label}) >= layer.size
    late = UnknownTraffic.objects.get(label=old, retired=True)
    assert late.bytes >= layer.size and late.requests >= 1
