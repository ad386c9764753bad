"""Property: for any grants and usage, the ledger's summary equals the rule in its docstring.

The reference below walks hour by hour, the plainest reading of the rule; the ledger cuts
months at grant events and reads a monthly rollup. Both must agree exactly.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quota.grants import grant_create
from quota.month import month_summary
from quota.periods import ceil_hour, floor_hour, month_start, next_month
from quota.usage import UsageDelta, usage_apply

pytestmark = pytest.mark.django_db

BASE = 200
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPAN_HOURS = 24 * 70  # January to early March: two month boundaries


def reference(*, base, grants, usage, now):
    """grants: [(bytes, created_at, expires_at|None)] in creation order; usage: {hour: bytes}.

    Month by month from the first usage, hour by hour within a month: the debt the month
    brings in is drawn in its first hour before that hour's usage, like usage; what nothing
    pays is the month's overspent and the next month's debt.
    """
    far = datetime.max.replace(tzinfo=UTC)
    live = [(i, g) for i, g in enumerate(grants) if g[1] <= now]
    order = sorted(live, key=lambda ig: (ig[1][2] is None, ig[1][2] or far, ig[1][1], ig[0]))
    balance = {i: g[0] for i, g in live}

    def draw(hour, nbytes, drawn):
        """Pay nbytes at `hour` after `drawn` bytes this month: (from grants, unpaid)."""
        rest = nbytes - min(nbytes, max(0, base - drawn))
        from_grants = 0
        for i, (_b, created, expires) in order:
            if rest == 0:
                break
            if floor_hour(created) <= hour and (expires is None or hour < ceil_hour(expires)):
                take = min(balance[i], rest)
                balance[i] -= take
                rest -= take
                from_grants += take
        return from_grants, rest

    cur = month_start(now)
    month = min([cur, *(month_start(h) for h in usage)])
    carried = 0
    while True:
        carried_in = carried
        hours = [(h, usage[h]) for h in sorted(usage) if month_start(h) == month]
        drawn = bonus_used = over = 0  # drawn: the debt and the usage so far, against the base
        for hour, nbytes in [(month, carried_in), *hours]:
            paid_by_grants, unpaid = draw(hour, nbytes, drawn)
            drawn += nbytes
            bonus_used += paid_by_grants
            over += unpaid
        used = drawn - carried_in
        if month == cur:
            break
        carried = over
        month = next_month(month)
    bonus_left = sum(balance[i] for i, (_b, c, e) in live if c <= now and (e is None or e > now))
    return {
        "carried_in": carried_in,
        "used": used,
        "bonus_used": bonus_used,
        "overspent": over,
        "bonus_left": bonus_left,
        "remaining": max(0, base - carried_in - used) + bonus_left,
        "allowance": base + bonus_used + bonus_left,
    }


minutes = st.integers(min_value=0, max_value=SPAN_HOURS * 60)
grant_st = st.tuples(
    st.integers(min_value=1, max_value=600),  # bytes
    minutes,  # created, minutes after T0
    st.one_of(st.none(), st.integers(min_value=1, max_value=24 * 60 * 30)),  # lifetime, minutes
)
usage_st = st.tuples(
    st.integers(min_value=0, max_value=SPAN_HOURS),  # hour offset
    st.integers(min_value=0, max_value=400),
    st.sampled_from(["e1", "e2"]),
)


@override_settings(QUOTA_MONTHLY_BYTES=BASE)
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    grants=st.lists(grant_st, min_size=1, max_size=6),
    usage=st.lists(usage_st, min_size=5, max_size=40),
    # Late in the span, so that earlier months and expiries matter.
    now_minute=st.integers(min_value=SPAN_HOURS * 30, max_value=SPAN_HOURS * 60),
)
def test_summary_equals_the_definition(tenant, grants, usage, now_minute):
    now = T0 + timedelta(minutes=now_minute)
    # Grants in creation order; only the ones already made at `now` exist, as in real life.
    made = sorted(
        (
            (
                nbytes,
                T0 + timedelta(minutes=c),
                (T0 + timedelta(minutes=c + life)) if life else None,
            )
            for nbytes, c, life in grants
        ),
        key=lambda g: g[1],
    )
    made = [g for g in made if g[1] <= now]
    hourly: dict[datetime, int] = defaultdict(int)
    deltas = []
    for offset, nbytes, edge in usage:
        hour = T0 + timedelta(hours=offset)
        if hour > now:
            continue  # buckets are never in the future
        hourly[hour] += nbytes
        deltas.append(UsageDelta(tenant.pk, edge, hour, nbytes, 1))

    with transaction.atomic():
        for n, (nbytes, created, expires) in enumerate(made):
            grant_create(
                tenant=tenant,
                kind="promo",
                bytes=nbytes,
                source_key=f"p{n}",
                now=created,
                expires_at=expires,
            )
        usage_apply(deltas=deltas)
        got = month_summary(tenant=tenant, now=now)
        # The second call starts from the cached balances at the start of the month.
        again = month_summary(tenant=tenant, now=now)
        transaction.set_rollback(True)

    want = reference(base=BASE, grants=made, usage=dict(hourly), now=now)
    assert {k: getattr(got, k) for k in want} == want
    assert again == got
    assert got.remaining == got.allowance - got.charged
    assert got.remaining == got.allowance - got.carried_in - got.used + got.overspent
    assert 0 <= got.charged <= got.allowance
    assert got.remaining >= 0 and 0 <= got.overspent <= got.carried_in + got.used
    # The debt brought in is exactly what the month before left unpaid.
    with transaction.atomic():
        for n, (nbytes, created, expires) in enumerate(made):
            grant_create(
                tenant=tenant,
                kind="promo",
                bytes=nbytes,
                source_key=f"p{n}",
                now=created,
                expires_at=expires,
            )
        usage_apply(deltas=deltas)
        before = month_summary(tenant=tenant, now=got.month_start - timedelta(microseconds=1))
        transaction.set_rollback(True)
    assert got.carried_in == before.overspent
    assert got.exhausted == (got.remaining <= 0)
