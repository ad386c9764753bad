"""The API's usage is split by registry, for the tenant's own rows only."""

from __future__ import annotations

from accelerator.services import tenant_start
from quota.usage import UsageDelta, usage_apply
from tests.api.conftest import hour


def test_usage_is_split_by_registry(owner_tenant, owner_token, stranger, api) -> None:
    other = tenant_start(user=stranger)
    usage_apply(
        deltas=[
            UsageDelta(owner_tenant.pk, "e1", hour(1, 5), 100, 2, 1),
            UsageDelta(owner_tenant.pk, "e2", hour(1, 6), 300, 3, 0, registry="ghcr.io"),
            UsageDelta(owner_tenant.pk, "e1", hour(1, 7), 0, 4, 0, registry=""),
            UsageDelta(owner_tenant.pk, "e1", hour(9), 50, 1, 0, registry="quay.io"),  # outside
            UsageDelta(other.pk, "e1", hour(1, 5), 999, 9, 0, registry="quay.io"),  # another's
        ]
    )
    day = hour(1).date().isoformat()
    body = api(owner_token).get("/api/v1/usage/", {"start": day, "end": day}).json()
    assert body["registries"] == [
        {"registry": "ghcr.io", "bytes": 300, "requests": 3, "cache_hits": 0},
        {"registry": "docker.io", "bytes": 100, "requests": 2, "cache_hits": 1},
    ]
    assert body["total_bytes"] == sum(r["bytes"] for r in body["registries"])


def test_no_token_no_split(api) -> None:
    assert api(None).get(
        "/api/v1/usage/", {"start": "2026-01-01", "end": "2026-01-02"}
    ).status_code in (401, 403)
