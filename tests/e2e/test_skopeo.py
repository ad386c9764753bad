"""skopeo (a real Go registry client) through a tenant's mirror: inspect and copy."""

from __future__ import annotations

import json

import pytest

from accelerator.services import tenant_suspend
from tests.e2e import harness

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]


def test_inspect_through_tenant_host(edge, upstream, make_tenant, skopeo):
    tenant = make_tenant()
    small = upstream.images["small"]
    result = skopeo.inspect(f"docker://{edge.host(tenant.label)}/{small.repo}:{small.tag}")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["Digest"] == small.image.digest
    assert info["Layers"] == [layer.digest for layer in small.image.layers]


def test_inspect_raw_manifest_list_keeps_upstream_digest(edge, upstream, make_tenant, skopeo):
    tenant = make_tenant()
    multi = upstream.images["multi"]
    result = skopeo.inspect(
        f"docker://{edge.host(tenant.label)}/{multi.repo}:{multi.tag}", raw=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.encode() == multi.image.manifest


def test_copy_through_tenant_host_verifies_digests_and_sizes(edge, upstream, make_tenant, skopeo):
    tenant = make_tenant()
    large = upstream.images["large"]
    result, dest = skopeo.copy_to_dir(
        f"docker://{edge.host(tenant.label)}/{large.repo}:{large.tag}", "large"
    )
    assert result.returncode == 0, result.stderr
    harness.verify_dir_copy(dest, large.image)
    lines = [x for x in edge.log_lines() if x["tenant"] == tenant.label and x["status"] == 200]
    layer = large.image.layers[0]
    blob_lines = [x for x in lines if x["uri"].endswith(layer.digest)]
    assert [x["body_bytes_sent"] for x in blob_lines] == [layer.size]


def test_copy_docker_io_through_registries_conf_mirror(
    edge, upstream, make_tenant, pull_with_skopeo
):
    tenant = make_tenant()
    pull_with_skopeo(tenant.label, "small")
    # A manifest list: each platform's own manifest and blobs, as the upstream has them.
    multi = upstream.images["multi"]
    for arch in multi.image.images:
        pull_with_skopeo(tenant.label, "multi", arch=arch)
    uris = {x["uri"] for x in edge.log_lines() if x["tenant"] == tenant.label}
    assert f"/v2/{multi.repo}/manifests/{multi.tag}" in uris


def test_refused_mirror_makes_skopeo_fail_over_to_docker_hub(
    edge, upstream, make_tenant, skopeo, edge_sync
):
    """With the mirror refusing, skopeo moves on to registry-1.docker.io (unreachable here or
    without this repository): the copy fails, and nothing was served by the mirror."""
    tenant = make_tenant()
    tenant_suspend(tenant=tenant, reason="test")
    edge_sync()
    skopeo.mirror_docker_io(edge.host(tenant.label))
    small = upstream.images["small"]
    result, _ = skopeo.copy_to_dir(f"docker://{small.docker_ref}", "refused")
    assert result.returncode != 0
    statuses = {x["status"] for x in edge.log_lines() if x["tenant"] == tenant.label}
    assert statuses == {403}
