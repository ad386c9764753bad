"""Two processes at once, each with its own database connection: exact totals, one grant per
key, one exhausted mark and one email per threshold."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accelerator.models import Tenant
from quota.grants import grant_create
from quota.models import Grant, QuotaNotice, UsageBucket, UsageMonth
from quota.month import month_summary
from quota.periods import floor_hour
from quota.settlement import usage_after_batch
from quota.usage import UsageDelta, usage_apply
from tests.quota.conftest import GB, at, in_processes

pytestmark = pytest.mark.django_db(transaction=True)

HOURS = [at("2026-03-31 22:00") + timedelta(hours=h) for h in range(4)]  # across a month


def _write(tenant_ids, edge_order, rounds):
    for r in range(rounds):
        deltas = [
            UsageDelta(t, edge, hour, 1000 + r, 1, r % 2)
            for t in tenant_ids
            for edge in edge_order
            for hour in HOURS
        ]
        usage_apply(deltas=deltas)
    return rounds


def test_concurrent_usage_batches_sum_exactly(tenant, other_tenant):
    ids = [tenant.pk, other_tenant.pk]
    rounds = 40
    in_processes(_write, [(ids, ["a", "b"], rounds), (ids[::-1], ["b", "a"], rounds)])
    per_bucket = 2 * sum(1000 + r for r in range(rounds))
    buckets = list(UsageBucket.objects.values_list("bytes", "requests"))
    assert len(buckets) == 2 * 2 * len(HOURS)
    assert set(buckets) == {(per_bucket, 2 * rounds)}
    months = dict(UsageMonth.objects.filter(tenant=tenant).values_list("month", "bytes"))
    # Two hours in March, two in April, two edges each.
    assert months == {
        at("2026-03-01 00:00").date(): 4 * per_bucket,
        at("2026-04-01 00:00").date(): 4 * per_bucket,
    }


def _grant(tenant_id, keys):
    return [grant_create(tenant=tenant_id, kind="promo", bytes=GB, source_key=k).pk for k in keys]


def test_concurrent_grants_with_the_same_keys_grant_once(tenant):
    keys = [f"k{i}" for i in range(30)]
    a, b = in_processes(_grant, [(tenant.pk, keys), (tenant.pk, keys[::-1])])
    assert sorted(a) == sorted(b)  # both got the same grant for each key
    assert Grant.objects.count() == 30
    assert month_summary(tenant=tenant).bonus_left == 30 * GB


def _batch_then_evaluate(tenant_id, nbytes):
    from tests.quota.conftest import _eager

    _eager()
    usage_apply(deltas=[UsageDelta(tenant_id, "e", floor_hour(timezone.now()), nbytes, 1)])
    usage_after_batch(tenant_ids=[tenant_id])
    return len(mail.outbox)


def test_two_workers_crossing_the_limit_mark_once_and_email_once(tenant, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    sent = in_processes(_batch_then_evaluate, [(tenant.pk, 6 * GB), (tenant.pk, 5 * GB)])
    assert Tenant.objects.get(pk=tenant.pk).exhausted_at is not None
    assert month_summary(tenant=tenant).used == 11 * GB
    # One process saw 80 % or 100 % first; together they sent one email per threshold row
    # that was due, and each row exists once.
    rows = list(QuotaNotice.objects.values_list("threshold", "status"))
    assert sorted(t for t, _s in rows) in ([100], [80, 100])
    assert sum(sent) == sum(1 for _t, s in rows if s == "sent")
    assert all(s in {"sent", "skipped"} for _t, s in rows)
