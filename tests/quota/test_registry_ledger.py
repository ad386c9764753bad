"""Usage per (tenant, edge, hour, registry): rows of one hour from two registries stay apart,
the month rollup counts both, the split reads them back, and rows from before the registry
column are Docker Hub's after the migration."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accelerator.services import tenant_start
from quota.models import UsageBucket, UsageMonth
from quota.selectors import usage_by_registry
from quota.usage import UsageDelta, usage_apply

HOUR = datetime(2026, 11, 3, 10, tzinfo=UTC)


def test_registries_are_buckets_of_their_own_and_one_month(owner, stranger) -> None:
    mine, other = tenant_start(user=owner), tenant_start(user=stranger)
    usage_apply(
        deltas=[
            UsageDelta(mine.pk, "e1", HOUR, 100, 2, 1),  # no registry: Docker Hub's
            UsageDelta(mine.pk, "e1", HOUR, 40, 1, 0, registry="ghcr.io"),
            UsageDelta(mine.pk, "e1", HOUR, 7, 1, 0, registry="ghcr.io"),
            UsageDelta(mine.pk, "e1", HOUR, 0, 3, 0, registry=""),  # refused, free
            UsageDelta(other.pk, "e1", HOUR, 999, 1, 0, registry="quay.io"),
        ]
    )
    rows = {
        r.registry: (r.bytes, r.requests)
        for r in UsageBucket.objects.filter(tenant=mine, edge="e1", hour=HOUR)
    }
    assert rows == {"docker.io": (100, 2), "ghcr.io": (47, 2), "": (0, 3)}
    assert UsageMonth.objects.get(tenant=mine).bytes == 147
    split = usage_by_registry(tenant=mine, start=HOUR.date(), end=HOUR.date())
    assert [(r.registry, r.bytes, r.requests) for r in split] == [
        ("docker.io", 100, 2),
        ("ghcr.io", 47, 2),
    ]
    assert (
        usage_by_registry(
            tenant=mine, start=HOUR.date().replace(day=4), end=HOUR.date().replace(day=5)
        )
        == []
    )


@pytest.mark.django_db(transaction=True)
def test_existing_rows_become_docker_hubs(owner) -> None:
    tenant = tenant_start(user=owner)
    before = [("quota", "0003_tenant_indexes")]
    try:
        MigrationExecutor(connection).migrate(before)
        with connection.cursor() as cursor:  # a row as the ledger wrote it before registries
            cursor.execute(
                "INSERT INTO quota_usagebucket (tenant_id, edge, hour, bytes, requests, cache_hits)"
                " VALUES (%s, 'e1', %s, 5, 1, 0)",
                [tenant.pk, HOUR],
            )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    row = UsageBucket.objects.get(tenant=tenant)
    assert (row.registry, row.bytes, row.requests) == ("docker.io", 5, 1)
    # The new key: the same hour from another registry is a row of its own.
    usage_apply(deltas=[UsageDelta(tenant.pk, "e1", HOUR, 3, 1, 0, registry="ghcr.io")])
    assert UsageBucket.objects.filter(tenant=tenant).count() == 2
