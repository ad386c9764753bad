"""The month rule of quota/month.py on PostgreSQL: base first, then bonus; expiry; UTC months."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings

from accelerator.models import Tenant
from quota.errors import LedgerError
from quota.grants import grant_create
from quota.models import UsageBucket, UsageMonth
from quota.month import is_exhausted, month_summary
from quota.selectors import usage_daily, usage_series
from quota.usage import usage_rollup_rebuild
from tests.quota.conftest import GB, at, use

pytestmark = pytest.mark.django_db


def grant(tenant, nbytes, when, key, expires=None, kind="promo"):
    return grant_create(
        tenant=tenant,
        kind=kind,
        bytes=nbytes,
        source_key=key,
        now=at(when),
        expires_at=at(expires) if expires else None,
    )


def test_fresh_tenant_has_the_whole_base(tenant):
    s = month_summary(tenant=tenant, now=at("2026-03-15 12:00"))
    assert (s.used, s.base, s.bonus_left, s.remaining, s.overspent) == (0, 10 * GB, 0, 10 * GB, 0)
    assert s.month_start == at("2026-03-01 00:00")
    assert s.resets_at == at("2026-04-01 00:00")
    assert s.percent_used == 0
    assert not is_exhausted(tenant=tenant, now=at("2026-03-15 12:00"))


def test_usage_below_base_leaves_the_bonus_untouched(tenant):
    grant(tenant, 2 * GB, "2026-03-01 08:00", "g1")
    use(tenant, "2026-03-02 10:00", 4 * GB)
    use(tenant, "2026-03-03 10:00", 4 * GB, edge="e2")
    s = month_summary(tenant=tenant, now=at("2026-03-10 00:00"))
    assert s.used == 8 * GB
    assert s.bonus_used == 0
    assert s.bonus_left == 2 * GB
    assert s.remaining == 4 * GB
    assert s.allowance == 12 * GB
    assert s.percent_used == 66


def test_usage_past_the_base_draws_the_bonus(tenant):
    grant(tenant, 3 * GB, "2026-03-01 08:00", "g1")
    use(tenant, "2026-03-02 10:00", 11 * GB)
    s = month_summary(tenant=tenant, now=at("2026-03-10 00:00"))
    assert (s.used, s.bonus_used, s.bonus_left, s.remaining) == (11 * GB, GB, 2 * GB, 2 * GB)
    assert s.remaining == s.allowance - s.used + s.overspent


def test_exhausted_exactly_at_zero_and_overspent_counts_the_excess(tenant):
    use(tenant, "2026-03-02 10:00", 10 * GB)
    assert is_exhausted(tenant=tenant, now=at("2026-03-02 11:00"))
    use(tenant, "2026-03-02 11:00", 300)
    s = month_summary(tenant=tenant, now=at("2026-03-02 12:00"))
    assert (s.remaining, s.overspent, s.percent_used) == (0, 300, 100)


def test_bonus_spent_in_an_earlier_month_is_gone_and_the_base_comes_back(tenant):
    grant(tenant, 5 * GB, "2026-01-10 00:00", "g1")
    use(tenant, "2026-01-20 00:00", 13 * GB)  # 3 GB of bonus spent in January
    use(tenant, "2026-02-03 00:00", 1 * GB)
    s = month_summary(tenant=tenant, now=at("2026-02-10 00:00"))
    assert (s.used, s.bonus_left, s.remaining) == (1 * GB, 2 * GB, 11 * GB)


def test_unused_base_does_not_carry_over(tenant):
    use(tenant, "2026-01-20 00:00", 1 * GB)
    s = month_summary(tenant=tenant, now=at("2026-02-01 00:00"))
    assert (s.used, s.remaining) == (0, 10 * GB)


def test_a_months_overspend_reduces_the_next_months_remaining(tenant):
    use(tenant, "2026-01-20 00:00", 12 * GB)  # 2 GB overspent in January
    jan = month_summary(tenant=tenant, now=at("2026-01-26 00:00"))
    assert (jan.carried_in, jan.overspent, jan.remaining, jan.percent_used) == (0, 2 * GB, 0, 100)
    feb = month_summary(tenant=tenant, now=at("2026-02-01 00:00"))
    assert (feb.carried_in, feb.used, feb.overspent, feb.remaining) == (2 * GB, 0, 0, 8 * GB)
    assert (feb.base_left, feb.charged, feb.allowance, feb.percent_used) == (
        8 * GB,
        2 * GB,
        10 * GB,
        20,
    )
    use(tenant, "2026-02-03 00:00", 7 * GB)
    feb = month_summary(tenant=tenant, now=at("2026-02-04 00:00"))
    assert (feb.used, feb.remaining, feb.percent_used) == (7 * GB, 1 * GB, 90)
    # Paid in full by February's base: March owes nothing.
    mar = month_summary(tenant=tenant, now=at("2026-03-01 00:00"))
    assert (mar.carried_in, mar.remaining) == (0, 10 * GB)


def test_a_debt_larger_than_a_months_base_carries_two_months(tenant):
    use(tenant, "2026-01-20 00:00", 25 * GB)  # 15 GB overspent in January
    feb = month_summary(tenant=tenant, now=at("2026-02-15 00:00"))
    assert (feb.carried_in, feb.overspent, feb.remaining, feb.exhausted) == (
        15 * GB,
        5 * GB,
        0,
        True,
    )
    mar = month_summary(tenant=tenant, now=at("2026-03-01 00:00"))
    assert (mar.carried_in, mar.overspent, mar.remaining) == (5 * GB, 0, 5 * GB)
    apr = month_summary(tenant=tenant, now=at("2026-04-01 00:00"))
    assert (apr.carried_in, apr.remaining) == (0, 10 * GB)
    # Usage in a month that starts in debt is owed too, and carries on with the rest.
    use(tenant, "2026-02-20 00:00", GB)
    mar = month_summary(tenant=tenant, now=at("2026-03-01 00:00"))
    assert (mar.carried_in, mar.remaining) == (6 * GB, 4 * GB)


def test_a_grant_made_later_pays_a_carried_debt_only_from_the_next_month_start(tenant):
    """The rule: the debt is drawn in the month's first hour, base first, then the grants in
    force in that hour. A grant made later in the month pays the month's later usage, and
    what the debt left unpaid only at the next month's start, after that month's base."""
    use(tenant, "2026-01-20 00:00", 22 * GB)  # 12 GB overspent in January
    grant(tenant, 5 * GB, "2026-02-10 00:00", "g1")
    feb = month_summary(tenant=tenant, now=at("2026-02-10 00:30"))
    # February's base paid 10 GB of the debt; the grant, made later, paid none of it.
    assert (feb.carried_in, feb.overspent, feb.bonus_used, feb.bonus_left) == (
        12 * GB,
        2 * GB,
        0,
        5 * GB,
    )
    assert (feb.remaining, feb.exhausted, feb.charged, feb.allowance) == (
        5 * GB,
        False,
        10 * GB,
        15 * GB,
    )
    use(tenant, "2026-02-12 00:00", GB)  # paid by the grant
    mar = month_summary(tenant=tenant, now=at("2026-03-01 00:00"))
    # March's base pays the 2 GB first; the grant keeps its 4 GB.
    assert (mar.carried_in, mar.bonus_used, mar.bonus_left, mar.remaining) == (
        2 * GB,
        0,
        4 * GB,
        12 * GB,
    )


def test_a_grant_in_force_at_the_month_start_pays_the_debt_after_the_base(tenant):
    grant(tenant, 4 * GB, "2026-01-25 00:00", "g1")  # made after January's overspending
    use(tenant, "2026-01-20 00:00", 23 * GB)
    jan = month_summary(tenant=tenant, now=at("2026-01-26 00:00"))
    assert (jan.overspent, jan.bonus_left, jan.remaining) == (13 * GB, 4 * GB, 4 * GB)
    feb = month_summary(tenant=tenant, now=at("2026-02-01 00:00"))
    assert (feb.carried_in, feb.bonus_used, feb.overspent) == (13 * GB, 3 * GB, 0)
    assert (feb.bonus_left, feb.remaining, feb.allowance) == (GB, GB, 14 * GB)
    assert feb.remaining == feb.allowance - feb.carried_in - feb.used + feb.overspent


def test_expired_bonus_is_gone(tenant):
    grant(tenant, 4 * GB, "2026-03-01 00:00", "g1", expires="2026-03-10 00:00")
    use(tenant, "2026-03-05 00:00", 11 * GB)
    before = month_summary(tenant=tenant, now=at("2026-03-09 23:59"))
    after = month_summary(tenant=tenant, now=at("2026-03-10 00:00"))
    assert (before.bonus_left, before.remaining) == (3 * GB, 3 * GB)
    assert (after.bonus_left, after.remaining) == (0, 0)
    assert after.allowance == 11 * GB  # base + what the grant paid while it lasted


def test_usage_after_expiry_is_not_paid_by_the_expired_grant(tenant):
    grant(tenant, 4 * GB, "2026-03-01 00:00", "g1", expires="2026-03-10 00:00")
    use(tenant, "2026-03-05 00:00", 10 * GB)
    use(tenant, "2026-03-12 00:00", 1 * GB)  # over the base, after the grant expired
    s = month_summary(tenant=tenant, now=at("2026-03-12 05:00"))
    assert (s.bonus_used, s.overspent, s.remaining) == (0, 1 * GB, 0)


def test_usage_before_a_grant_is_not_paid_by_it(tenant):
    use(tenant, "2026-03-05 00:00", 11 * GB)  # 1 GB over, no grant yet
    grant(tenant, 4 * GB, "2026-03-06 00:00", "g1")
    use(tenant, "2026-03-07 00:00", 1 * GB)
    s = month_summary(tenant=tenant, now=at("2026-03-08 00:00"))
    assert (s.overspent, s.bonus_used, s.bonus_left, s.remaining) == (GB, GB, 3 * GB, 3 * GB)


def test_earliest_expiring_grant_is_drawn_first(tenant):
    grant(tenant, 2 * GB, "2026-03-01 00:00", "forever")
    grant(tenant, 2 * GB, "2026-03-01 00:00", "soon", expires="2026-04-15 00:00")
    use(tenant, "2026-03-05 00:00", 11 * GB)
    march = month_summary(tenant=tenant, now=at("2026-03-20 00:00"))
    assert march.bonus_left == 3 * GB
    # The expiring one paid, so its expiry costs 1 GB, not 2.
    may = month_summary(tenant=tenant, now=at("2026-05-01 00:00"))
    assert may.bonus_left == 2 * GB


def test_month_boundary_is_utc(tenant):
    use(tenant, "2026-03-31 23:00", 6 * GB)  # 07:00 on April 1st in Beijing, still March
    use(tenant, "2026-04-01 00:00", 1 * GB)
    assert month_summary(tenant=tenant, now=at("2026-03-31 23:59")).used == 6 * GB
    april = month_summary(tenant=tenant, now=at("2026-04-01 00:00"))
    assert (april.used, april.remaining) == (1 * GB, 9 * GB)


def test_a_tenant_created_mid_month_gets_the_whole_base(tenant):
    Tenant.objects.filter(pk=tenant.pk).update(created_at=at("2026-03-28 17:00"))
    use(tenant, "2026-03-29 00:00", 9 * GB)
    s = month_summary(tenant=tenant, now=at("2026-03-30 00:00"))
    assert (s.base, s.remaining) == (10 * GB, 1 * GB)


def test_december_to_january(tenant):
    use(tenant, "2026-12-31 23:00", 10 * GB)
    assert is_exhausted(tenant=tenant, now=at("2026-12-31 23:30"))
    jan = month_summary(tenant=tenant, now=at("2027-01-01 00:00"))
    assert (jan.month_start, jan.resets_at, jan.remaining) == (
        at("2027-01-01 00:00"),
        at("2027-02-01 00:00"),
        10 * GB,
    )


@override_settings(QUOTA_MONTHLY_BYTES=1000)
def test_base_comes_from_settings(tenant):
    use(tenant, "2026-03-02 10:00", 999)
    s = month_summary(tenant=tenant, now=at("2026-03-03 00:00"))
    assert (s.base, s.remaining) == (1000, 1)


def test_summary_needs_an_aware_time(tenant):
    with pytest.raises(LedgerError):
        month_summary(tenant=tenant, now=at("2026-03-03 00:00").replace(tzinfo=None))


def test_other_tenants_usage_does_not_count(tenant, other_tenant):
    use(other_tenant, "2026-03-02 10:00", 10 * GB)
    assert month_summary(tenant=tenant, now=at("2026-03-03 00:00")).used == 0


def test_usage_apply_upserts_and_keeps_the_rollup_equal(tenant):
    use(tenant, "2026-03-02 10:15", 5, requests=1)
    use(tenant, "2026-03-02 10:45", 7, requests=2)
    use(tenant, "2026-04-02 10:45", 11)
    bucket = UsageBucket.objects.get(tenant=tenant, hour=at("2026-03-02 10:00"))
    assert (bucket.bytes, bucket.requests) == (12, 3)
    rollup = dict(UsageMonth.objects.filter(tenant=tenant).values_list("month", "bytes"))
    assert rollup == {at("2026-03-01 00:00").date(): 12, at("2026-04-01 00:00").date(): 11}
    UsageMonth.objects.all().delete()
    assert usage_rollup_rebuild() == 2
    assert dict(UsageMonth.objects.values_list("month", "bytes")) == rollup


def test_usage_daily_is_zero_filled_per_utc_day(tenant):
    use(tenant, "2026-03-01 23:00", 5)
    use(tenant, "2026-03-02 00:00", 7)
    use(tenant, "2026-03-02 05:00", 1, edge="e2")
    use(tenant, "2026-02-20 05:00", 1000)  # outside the window
    days = usage_daily(tenant=tenant, days=4, now=at("2026-03-03 12:00"))
    assert [(d.day.isoformat(), d.bytes) for d in days] == [
        ("2026-02-28", 0),
        ("2026-03-01", 5),
        ("2026-03-02", 8),
        ("2026-03-03", 0),
    ]
    assert len(usage_daily(tenant=tenant, now=at("2026-03-03 12:00"))) == 30
    for bad in (0, -1, 367):
        with pytest.raises(LedgerError):
            usage_daily(tenant=tenant, days=bad)


def test_summary_query_count_is_flat_with_history(tenant, django_assert_max_num_queries):
    start = at("2025-03-01 00:00")
    from quota.usage import UsageDelta, usage_apply

    usage_apply(
        deltas=[
            UsageDelta(tenant.pk, "e1", start + timedelta(hours=h), 2_000_000, 1)
            for h in range(0, 24 * 365, 6)
        ]
    )
    grant(tenant, 2 * GB, "2025-03-10 00:00", "old", expires="2026-06-01 00:00")
    grant(tenant, 2 * GB, "2026-02-10 00:00", "new")
    with django_assert_max_num_queries(3):
        s = month_summary(tenant=tenant, now=at("2026-02-27 00:00"))
    assert s.remaining > 0


def test_late_usage_and_back_dated_grants_invalidate_the_cached_balances(tenant):
    grant(tenant, 5 * GB, "2026-01-10 00:00", "g1")
    use(tenant, "2026-01-20 00:00", 12 * GB)
    now = at("2026-02-10 00:00")
    assert month_summary(tenant=tenant, now=now).bonus_left == 3 * GB
    assert month_summary(tenant=tenant, now=now).bonus_left == 3 * GB  # cached
    use(tenant, "2026-01-31 23:00", GB)  # a late batch for January
    assert month_summary(tenant=tenant, now=now).bonus_left == 2 * GB
    grant(tenant, GB, "2026-01-25 00:00", "late", expires="2026-02-05 00:00")
    # The back-dated grant expires first, so it paid for January before g1 did.
    assert month_summary(tenant=tenant, now=now).bonus_left == 3 * GB


def test_usage_series_per_hour_and_for_all_tenants(tenant, other_tenant):
    use(tenant, "2026-03-02 05:00", 3)
    use(other_tenant, "2026-03-02 05:00", 4)
    use(tenant, "2026-03-03 00:00", 1000)  # the day after the range
    day = at("2026-03-02 00:00").date()
    hours = usage_series(tenant=tenant, start=day, end=day, granularity="hour")
    assert len(hours) == 24 and hours[5].start == at("2026-03-02 05:00")
    assert [p.bytes for p in hours if p.bytes] == [3]
    everyone = usage_series(tenant=None, start=day, end=day, granularity="day")
    assert [(p.start, p.bytes) for p in everyone] == [(at("2026-03-02 00:00"), 7)]
