"""quota.usage.usage_apply_hourly (what ingestion writes with): the very rows and monthly
rollups usage_apply writes for the same usage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from quota.models import UsageBucket, UsageMonth
from quota.usage import UsageDelta, usage_apply, usage_apply_hourly
from tests.ingest.conftest import make_tenants

pytestmark = pytest.mark.django_db

HOUR = 3600


def _ledger() -> tuple[list, list]:
    buckets = sorted(
        UsageBucket.objects.values_list(
            "tenant_id", "edge", "hour", "registry", "bytes", "requests", "cache_hits"
        )
    )
    months = sorted(UsageMonth.objects.values_list("tenant_id", "month", "bytes"))
    return buckets, months


def test_hourly_buckets_write_what_usage_apply_writes(django_user_model):
    t1, t2 = make_tenants(django_user_model, 2).values()
    # Hours on both sides of a month's end, two registries, twice the same bucket.
    last_hour = datetime(2026, 1, 31, 23, tzinfo=UTC).timestamp() // HOUR
    usage = {
        (t1, last_hour, "docker.io"): [100, 3, 1],
        (t1, last_hour + 1, "docker.io"): [7, 1, 0],
        (t1, last_hour + 1, "ghcr.io"): [9, 2, 2],
        (t2, last_hour - 5, "docker.io"): [0, 4, 0],
    }
    for _ in range(2):
        usage_apply_hourly(edge="e1", buckets=usage)
    hourly = _ledger()
    UsageBucket.objects.all().delete()
    UsageMonth.objects.all().delete()
    for _ in range(2):
        usage_apply(
            deltas=[
                UsageDelta(
                    t, "e1", datetime.fromtimestamp(h * HOUR, tz=UTC), *acc, registry=registry
                )
                for (t, h, registry), acc in usage.items()
            ]
        )
    assert hourly == _ledger()
    assert [(t, m.month, b) for t, m, b in hourly[1]] == [(t1, 1, 200), (t1, 2, 32), (t2, 1, 0)]
    assert hourly[0][0][4:] == (200, 6, 2)


def test_nothing_to_write_writes_nothing():
    usage_apply_hourly(edge="e1", buckets={})
    assert _ledger() == ([], [])
