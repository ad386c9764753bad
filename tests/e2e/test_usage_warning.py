"""Past 80 % of the allowance, manifest answers (GET and HEAD) carry the usage Warning header;
below it, none; blobs and refusals never."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from quota.enforcement import tenant_enforce
from quota.usage import UsageDelta, usage_apply

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

BASE = 10**9


def use(tenant, nbytes: int) -> None:
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    usage_apply(deltas=[UsageDelta(tenant.pk, "elsewhere", hour, nbytes, 1)])
    tenant_enforce(tenant_id=tenant.pk)


def warnings(edge, label: str, path: str, method: str) -> list[str]:
    r = edge.get(label, path, method=method)
    assert r.status == 200, (r.status, r.body[:300])
    return r.headers.get_all("Warning") or []


def test_warning_on_manifests_past_80_percent_only(
    edge, upstream, make_tenant, edge_sync, settings
):
    settings.QUOTA_MONTHLY_BYTES = BASE
    settings.SITE_URL = "https://accel.example.io"
    small = upstream.images["small"]
    manifest = f"/v2/{small.repo}/manifests/{small.tag}"
    blob = f"/v2/{small.repo}/blobs/{small.image.layers[0].digest}"
    below, past = make_tenant(), make_tenant()
    use(below, 790_000_000)  # 79 %
    use(past, 815_000_000)  # 81.5 %: shown as 810 MB (1 % steps)
    edge_sync()
    for method in ("GET", "HEAD"):
        assert warnings(edge, below.label, manifest, method) == []
        got = warnings(edge, past.label, manifest, method)
        assert got == [
            '299 - "810 MB of 1 GB used this month; https://accel.example.io/console/"'
        ], method
        assert re.fullmatch(r'299 - "[^"]+"', got[0])
    # Blobs never carry it; nor does the /v2/ ping.
    assert warnings(edge, past.label, blob, "GET") == []
    assert warnings(edge, past.label, "/v2/", "GET") == []
    # More use moves the text at 1 % steps; a grant back below 80 % removes it.
    use(past, 10_000_000)
    edge_sync()
    assert warnings(edge, past.label, manifest, "HEAD") == [
        '299 - "820 MB of 1 GB used this month; https://accel.example.io/console/"'
    ]
    from quota.grants import grant_create

    grant_create(tenant=past, kind="staff", bytes=BASE, source_key=f"test-{past.pk}")
    tenant_enforce(tenant_id=past.pk)
    edge_sync()
    assert warnings(edge, past.label, manifest, "GET") == []
