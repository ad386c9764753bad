"""The tenant gate with real nginx and the real gate sync: who gets what, and the messages."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from accelerator.services import (
    tenant_clear_exhausted,
    tenant_mark_exhausted,
    tenant_resume,
    tenant_rotate,
    tenant_suspend,
)
from tests.e2e import harness

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

API = "registry/2.0"


def assert_refusal(resp: harness.Response, status: int, code: str, words: str) -> None:
    assert resp.status == status, (resp.status, resp.body)
    assert resp.headers.get_all("Docker-Distribution-API-Version") == [API]
    assert resp.headers["Content-Type"].startswith("application/json")
    if not resp.body:  # a HEAD: status and headers only
        return
    errors = json.loads(resp.body)["errors"]
    assert errors[0]["code"] == code
    assert words in errors[0]["message"]


def manifest(edge, label, item, method="GET"):
    return edge.get(
        label,
        f"/v2/{item.repo}/manifests/{item.tag}",
        method=method,
        headers=[("Accept", harness.MT_MANIFEST), ("Accept", harness.MT_LIST)],
    )


def blob(edge, label, item, method="GET"):
    return edge.get(label, f"/v2/{item.repo}/blobs/{item.image.layers[0].digest}", method=method)


def test_active_tenant_is_served_with_upstream_digests(edge, upstream, make_tenant):
    tenant = make_tenant()
    small = upstream.images["small"]
    ping = edge.get(tenant.label, "/v2/")
    assert ping.status == 200 and ping.headers.get_all("Docker-Distribution-API-Version") == [API]
    resp = manifest(edge, tenant.label, small)
    assert resp.status == 200
    assert resp.headers["Docker-Content-Digest"] == small.image.digest
    assert resp.body == small.image.manifest
    head = manifest(edge, tenant.label, small, method="HEAD")
    assert head.status == 200 and head.body == b""
    layer = blob(edge, tenant.label, small)
    assert layer.status == 200 and layer.body == small.image.layers[0].data


def test_host_is_case_insensitive(edge, upstream, make_tenant):
    tenant = make_tenant()
    resp = harness.request(
        edge.port, "GET", "/v2/", host=edge.host(tenant.label).upper().replace("M.LOCAL", "m.Local")
    )
    assert resp.status == 200


def test_unknown_label_gets_404_name_unknown(edge, make_tenant):
    make_tenant()  # the map is not empty
    resp = edge.get("zzzzzzzzzzzz", "/v2/")
    assert_refusal(resp, 404, "NAME_UNKNOWN", "unknown accelerator host")


def test_other_domains_and_bare_domain_are_unknown(edge, make_tenant):
    tenant = make_tenant()
    for host in [
        f"{tenant.label}.example.com",
        edge.mirror_domain,
        f"x.{tenant.label}.m.localhost",
    ]:
        assert_refusal(
            harness.request(edge.port, "GET", "/v2/", host=host), 404, "NAME_UNKNOWN", "unknown"
        )


def test_suspended_tenant_gets_403_denied_everywhere(edge, upstream, make_tenant, edge_sync):
    tenant = make_tenant()
    tenant_suspend(tenant=tenant, reason="abuse")
    edge_sync()
    small = upstream.images["small"]
    for resp in (
        edge.get(tenant.label, "/v2/"),
        manifest(edge, tenant.label, small),
        blob(edge, tenant.label, small),
    ):
        assert_refusal(resp, 403, "DENIED", "suspended")
    tenant_resume(tenant=tenant)
    edge_sync()
    assert manifest(edge, tenant.label, small).status == 200


def test_exhausted_tenant_manifests_refused_blobs_served_within_grace(
    edge, upstream, make_tenant, edge_sync
):
    tenant = make_tenant()
    small = upstream.images["small"]
    assert tenant_mark_exhausted(tenant_id=tenant.pk)
    edge_sync()
    assert_refusal(manifest(edge, tenant.label, small), 429, "TOOMANYREQUESTS", "quota")
    assert_refusal(manifest(edge, tenant.label, small, "HEAD"), 429, "TOOMANYREQUESTS", "")
    # A pull already under way may finish its blobs.
    resp = blob(edge, tenant.label, small)
    assert resp.status == 200 and resp.body == small.image.layers[0].data


def test_exhausted_past_grace_refuses_blobs_too(edge, upstream, make_tenant, edge_sync, settings):
    tenant = make_tenant()
    small = upstream.images["small"]
    past = timezone.now() - timedelta(seconds=settings.GATE_BLOB_GRACE_SECONDS + 1)
    assert tenant_mark_exhausted(tenant_id=tenant.pk, at=past)
    edge_sync()
    assert_refusal(blob(edge, tenant.label, small), 429, "TOOMANYREQUESTS", "quota")
    assert_refusal(manifest(edge, tenant.label, small), 429, "TOOMANYREQUESTS", "quota")
    assert tenant_clear_exhausted(tenant_id=tenant.pk)
    edge_sync()
    assert blob(edge, tenant.label, small).status == 200


def test_after_the_short_grace_a_new_blob_request_is_refused(
    edge, upstream, make_tenant, edge_sync, settings
):
    from accelerator.gate import GateState, gate_table

    settings.GATE_BLOB_GRACE_SECONDS = 1
    tenant = make_tenant()
    small = upstream.images["small"]
    assert tenant_mark_exhausted(tenant_id=tenant.pk)
    edge_sync()
    assert blob(edge, tenant.label, small).status == 200  # within the grace
    deadline = time.monotonic() + 10
    while gate_table()[tenant.label] != GateState.EXHAUSTED_ALL:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    edge_sync()
    assert_refusal(blob(edge, tenant.label, small), 429, "TOOMANYREQUESTS", "quota")


def test_rotated_label_stops_working_and_new_one_works(
    edge, upstream, make_tenant, edge_sync, hosts
):
    tenant = make_tenant()
    old = tenant.label
    tenant = tenant_rotate(tenant=tenant)
    edge_sync()
    assert_refusal(edge.get(old, "/v2/"), 404, "NAME_UNKNOWN", "rotated")
    assert manifest(edge, tenant.label, upstream.images["small"]).status == 200


def test_refusals_are_logged_with_tenant_and_status(edge, make_tenant, edge_sync):
    tenant = make_tenant()
    tenant_suspend(tenant=tenant, reason="x")
    edge_sync()
    resp = edge.get(tenant.label, "/v2/library/accel-small/manifests/latest")
    assert resp.status == 403
    lines = [
        line
        for line in edge.log_lines()
        if line["tenant"] == tenant.label
        and line["uri"] == "/v2/library/accel-small/manifests/latest"
    ]
    assert len(lines) == 1
    line = lines[0]
    assert line["status"] == 403 and line["edge"] == edge.name and line["method"] == "GET"
    assert line["body_bytes_sent"] == len(resp.body)
    assert line["completion"] == "OK"
    assert len(line["request_id"]) == 32


def test_access_log_line_format_and_exact_body_bytes(edge, upstream, make_tenant):
    tenant = make_tenant()
    large = upstream.images["large"]
    layer = large.image.layers[0]
    resp = edge.get(tenant.label, f"/v2/{large.repo}/blobs/{layer.digest}")
    assert resp.status == 200 and len(resp.body) == layer.size
    lines = [line for line in edge.log_lines() if line["tenant"] == tenant.label]
    assert len(lines) == 1
    line = lines[0]
    assert set(line) == {
        "ts",
        "edge",
        "tenant",
        "host",
        "method",
        "uri",
        "status",
        "bytes_sent",
        "body_bytes_sent",
        "completion",
        "request_time",
        "request_id",
        "cache",
        "registry",
        "ua",
    }
    assert line["registry"] == "docker.io"
    assert list(line)[-1] == "ua"  # the client's User-Agent comes last (none sent here)
    assert isinstance(line["ts"], float) and isinstance(line["request_time"], float)
    assert line["host"] == edge.host(tenant.label, port=False)
    assert line["body_bytes_sent"] == layer.size
    assert line["bytes_sent"] > layer.size
    assert line["completion"] == "OK" and line["status"] == 200


def test_request_ids_are_unique(edge, make_tenant):
    tenant = make_tenant()
    for _ in range(20):
        edge.get(tenant.label, "/v2/")
    ids = [line["request_id"] for line in edge.log_lines()]
    assert len(ids) == len(set(ids))
