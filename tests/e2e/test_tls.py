"""HTTPS for clients (MIRROR_SCHEME=https): a wildcard certificate for *.MIRROR_DOMAIN."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
from dataclasses import replace

import pytest

from tests.conftest import require
from tests.e2e import harness
from tests.e2e.conftest import sync_gate

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]


@pytest.fixture(scope="module")
def tls_edge(edge):
    require(harness.which("openssl") is not None, "openssl is not installed")
    workdir = harness.worker_readable_dir("e2e-tls-")
    cert, key = harness.self_signed_cert(
        workdir / "cert.pem", workdir / "key.pem", f"*.{edge.mirror_domain}"
    )
    tls_port = harness.free_port()
    # Its own digest check (on its own cache), which its blob fills pass through.
    e = harness.start_sibling_edge(
        edge,
        workdir,
        port=tls_port,
        tls_listen=f"127.0.0.1:{tls_port}",
        tls_cert=cert,
        tls_key=key,
    )
    try:
        yield e, cert
    finally:
        e.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def https_get(port: int, host: str, path: str, cafile) -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(cafile))
    raw = socket.create_connection(("127.0.0.1", port), 10)
    with ctx.wrap_socket(raw, server_hostname=host) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_https_mirror_serves_with_verified_certificate(
    tls_edge, upstream, hosts, skopeo, django_user_model
):
    from accelerator.services import tenant_start

    edge, cert = tls_edge
    user = django_user_model.objects.create_user(email="tls@example.com", password="x-123456789")
    tenant = tenant_start(user=user)
    sync_gate(edge)
    host = edge.host(tenant.label, port=False)
    hosts.add(host)

    status, body = https_get(edge.port, host, "/v2/", cert)
    assert (status, body) == (200, b"{}")
    status, body = https_get(edge.port, "nosuchlabel1." + edge.mirror_domain, "/v2/", cert)
    assert status == 404 and json.loads(body)["errors"][0]["code"] == "NAME_UNKNOWN"

    # skopeo verifies the certificate against the CA given in its cert dir.
    cert_dir = skopeo.base / "certs"
    cert_dir.mkdir(exist_ok=True)
    shutil.copy(cert, cert_dir / "ca.crt")
    (cert_dir / "ca.crt").chmod(0o644)
    small = upstream.images["small"]
    result = skopeo.run(
        "inspect",
        "--cert-dir",
        str(cert_dir),
        f"docker://{edge.host(tenant.label)}/{small.repo}:{small.tag}",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Digest"] == small.image.digest
    lines = [x for x in edge.log_lines() if x["tenant"] == tenant.label]
    assert lines and all(x["status"] == 200 for x in lines)


def test_tls_settings_are_checked():
    from pathlib import Path

    from edge.render import EdgeConfigError

    base = harness.RENDER_PARAMS
    with pytest.raises(EdgeConfigError, match="EDGE_TLS_CERT"):
        replace(base, tls_listen="0.0.0.0:443").validate()
    with pytest.raises(EdgeConfigError, match="EDGE_TLS_LISTEN"):
        replace(base, tls_listen="443", tls_cert=Path("/c"), tls_key=Path("/k")).validate()
