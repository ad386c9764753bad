"""The month rule: the one owner of quota arithmetic, a tenant's month at an instant.

All amounts are integer bytes. Enforcement, the notices, the API and the dashboard read
month_summary and never recompute its rules.

The month rule (DESIGN.md sections 5 and 8), stated precisely
=============================================================

Let B = QUOTA_MONTHLY_BYTES. Time is cut into UTC calendar months; usage is stored in hourly
buckets, and a bucket with hour ``h`` belongs to the month that contains ``h``.

* Every month brings a fresh base of B, whether the tenant existed for all of it or was created
  on its last day (no proration: "10 GB a month" is what the user was promised).
* A grant ``g`` is *in force* for the buckets with ``floor_hour(g.created_at) <= h`` and, when it
  has an expiry, ``h < ceil_hour(g.expires_at)``: it covers the hour it was granted in and the
  hour it expires in, to the user's benefit.
* Within a month, buckets are drawn in time order: first from the month's base until B is
  used, then every further byte from the grants in force for that bucket, in priority order
  **earliest expiry first** (grants without expiry last), then oldest ``created_at``, then id.
  A grant's balance is its bytes minus everything drawn from it in any month.
* Usage that finds no base and no grant balance is that month's ``overspent`` (bytes served
  between exhaustion and the gate closing, for instance).
* **Overspending carries, never forgiven.** A month's ``overspent`` is the next month's
  ``carried_in`` (its debt): drawn like usage in that month's first hour, before that hour's
  usage, from the month's base first, then from the grants in force in that hour (same order
  as above). What of it nothing pays is part of that month's ``overspent`` and so carries on to
  the month after, month after month, until paid; a month without usage still pays from its
  base. Hence a grant pays a carried debt only when it is in force in the first hour of a month
  the debt reaches, and only after that month's base: a grant made later in a month pays that
  month's later usage, never the debt the month brought in nor the month's earlier
  overspending (both reach the next month's first hour, where the grant, if still in force,
  takes its turn after the base).
* Unused base does not carry over. Bonus left at the end of a month carries over until
  the grant expires; an expired grant's balance is gone.
* At an instant ``now``: ``bonus_left`` = the balances of the grants with
  ``created_at <= now`` and no expiry or ``expires_at > now``;
  ``remaining = max(0, B - carried_in - used this month) + bonus_left``. A tenant is
  exhausted when ``remaining <= 0``; a debt of B or more with no grant in force to pay the rest
  exhausts it from the month's first hour. The month's ``allowance`` = B + bonus drawn this
  month (for the debt or for usage) + bonus_left; ``charged = carried_in + used - overspent``
  is what the base and grants paid this month. Invariants:
  ``remaining == allowance - charged == allowance - carried_in - used + overspent``,
  ``0 <= charged <= allowance``, ``overspent <= carried_in + used``, and ``carried_in`` of a
  month equals ``overspent`` of the month before (0 before the tenant's first usage). The 80 %
  and 100 % emails compare ``charged`` with the allowance, so a carried debt counts toward
  them from the month's first hour.

How it stays fast (bench/ledger.py prints the figures)
-----------------------------------------------------
Only the instants where the set of grants in force changes (floor_hour of a creation,
ceil_hour of an expiry) and month starts matter, so the computation cuts months at those points
only: a month without such a point is read from the monthly rollup (UsageMonth, one row per
tenant and month, written by usage_apply in the same transaction as the buckets; index
``usage_month_key`` on (tenant, month)), a month with some from the (tenant, hour) index
(``usage_tenant_hour_idx``) as one grouped query. The grant balances and the carried debt at
the start of the current month are cached (Django cache) under a signature of everything they
depend on: the base, the grants made before this month and every earlier month's rollup total
(all of them: a debt can come from any earlier month). Usage only grows, so a late batch for an
earlier month changes a total and the signature, and the checkpoint is recomputed. A summary
is then three small queries and a cache read, whatever the length of the history: grants, the
tenant's rollup rows (one per month, an index range), this month's buckets when this month has
a cut point.

Usage is written by quota/usage.py (buckets and the rollup in one transaction); grants by
quota/grants.py.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from accelerator.models import Tenant
from accelerator.sql import ids_in
from quota.models import Grant, UsageBucket, UsageMonth
from quota.periods import ceil_hour, floor_hour, month_start, next_month, utc


@dataclass(frozen=True)
class MonthSummary:
    """A tenant's month at an instant. Integer bytes throughout."""

    month_start: datetime
    resets_at: datetime
    used: int  # everything served this month
    base: int
    bonus_used: int  # drawn from grants this month (for the carried debt or for usage)
    bonus_left: int  # unspent, unexpired grant balance now
    remaining: int  # max(0, base - carried_in - used) + bonus_left
    allowance: int  # base + bonus_used + bonus_left
    overspent: int  # debt and usage this month that nothing paid for: next month's carried_in
    carried_in: int = 0  # debt brought into this month: the previous month's overspent

    @property
    def base_left(self) -> int:
        return max(0, self.base - self.carried_in - self.used)

    @property
    def exhausted(self) -> bool:
        return self.remaining <= 0

    @property
    def charged(self) -> int:
        """What the base and grants paid this month, debt included (= allowance - remaining)."""
        return self.carried_in + self.used - self.overspent

    @property
    def percent_used(self) -> int:
        """Whole percent of the allowance spent, 0..100 (floored; 100 only when exhausted).

        Counts what was charged, the carried debt included: bytes overspent before a later
        grant arrived do not make a fresh grant look spent (they are next month's debt).
        """
        if self.allowance <= 0 or self.remaining <= 0:
            return 100
        return min(99, self.charged * 100 // self.allowance)


@dataclass
class _GrantState:
    id: int
    bytes: int
    created_at: datetime
    expires_at: datetime | None
    start_h: datetime = field(init=False)
    end_h: datetime | None = field(init=False)
    balance: int = field(init=False)

    def __post_init__(self) -> None:
        self.start_h = floor_hour(self.created_at)
        self.end_h = ceil_hour(self.expires_at) if self.expires_at is not None else None
        self.balance = self.bytes

    def covers(self, hour: datetime) -> bool:
        return self.start_h <= hour and (self.end_h is None or hour < self.end_h)

    def in_force_at(self, now: datetime) -> bool:
        return self.created_at <= now and (self.expires_at is None or self.expires_at > now)

    @property
    def priority(self) -> tuple:
        far = datetime.max.replace(tzinfo=UTC)
        return (self.expires_at is None, self.expires_at or far, self.created_at, self.id)


@dataclass(frozen=True)
class _MonthDraw:
    carried_in: int
    used: int
    bonus_used: int
    overspent: int


def _draw_month(
    *,
    base: int,
    month: datetime,
    carried_in: int,
    segments: Sequence[tuple[datetime, int]],
    grants: Sequence[_GrantState],
) -> _MonthDraw:
    """Draw the carried debt in the month's first hour, then the month's segments (start,
    bytes) in time order, each from base then grants.

    Grants must be in priority order; their balances are reduced in place. Every segment lies
    between two consecutive cut points, so the grants in force are the same for all of it.
    """
    drawn = bonus_used = overspent = 0  # drawn: debt and usage so far, against the base
    for start, nbytes in [(month, carried_in), *segments]:
        over = max(0, drawn + nbytes - base) - max(0, drawn - base)
        drawn += nbytes
        for grant in grants:
            if over <= 0:
                break
            if grant.balance > 0 and grant.covers(start):
                take = min(grant.balance, over)
                grant.balance -= take
                over -= take
                bonus_used += take
        overspent += over
    return _MonthDraw(
        carried_in=carried_in,
        used=drawn - carried_in,
        bonus_used=bonus_used,
        overspent=overspent,
    )


def _months_between(first: datetime, last: datetime) -> list[datetime]:
    months, m = [], month_start(first)
    while m <= last:
        months.append(m)
        m = next_month(m)
    return months


def _segment_sums(
    *, tenant_id: int, segments: dict[datetime, list[tuple[datetime, datetime]]]
) -> dict[datetime, int]:
    """Usage per segment start for the cut months, in one query over the (tenant, hour) index.

    A CASE picks each bucket's segment (first match wins), which is cheaper than one filtered
    sum per segment. Plain SQL: the ORM's compile time was a third of a summary's cost.
    """
    bounds = sorted((a, b) for parts in segments.values() for a, b in parts)
    adapt = connection.ops.adapt_datetimefield_value
    table = UsageBucket._meta.db_table
    case = " ".join(f"WHEN hour < %s THEN {i}" for i in range(len(bounds)))
    window = " OR ".join("(hour >= %s AND hour < %s)" for _m in segments)
    params = [adapt(b) for _a, b in bounds] + [tenant_id]
    for m in segments:
        params += [adapt(m), adapt(next_month(m))]
    sql = (
        f"SELECT CASE {case} ELSE -1 END AS seg, SUM(bytes) FROM {table} "
        f"WHERE tenant_id = %s AND ({window}) GROUP BY 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return {bounds[seg][0]: int(total) for seg, total in rows if seg >= 0}


_CHECKPOINT_SECONDS = 45 * 24 * 3600


def _checkpoint_signature(
    *, base: int, current: datetime, rollup: dict[date, int], grants: list[_GrantState]
) -> str:
    """Everything the balances and the debt at the start of `current` depend on.

    Usage only grows (usage_apply adds bytes), so a month whose total is unchanged has the
    same buckets; grants are append-only. Any late usage or back-dated grant changes this.
    """
    past = sorted((m.isoformat(), b) for m, b in rollup.items() if m < current.date())
    made = [
        (g.id, g.bytes, g.created_at.isoformat(), g.expires_at and g.expires_at.isoformat())
        for g in sorted(grants, key=lambda g: g.id)
        if g.created_at < current
    ]
    return hashlib.sha256(repr((base, past, made)).encode()).hexdigest()


def _summary(*, tenant_id: int, now: datetime) -> MonthSummary:
    base = settings.QUOTA_MONTHLY_BYTES
    current = month_start(now)
    resets_at = next_month(current)
    grants = [
        _GrantState(id=i, bytes=b, created_at=c, expires_at=e)
        for i, b, c, e in Grant.objects.filter(tenant_id=tenant_id, created_at__lte=now)
        .order_by()
        .values_list("id", "bytes", "created_at", "expires_at")
    ]
    grants.sort(key=lambda g: g.priority)

    # Every month since the first usage or grant: a debt can come from any of them. Uncut
    # months: one rollup row each. Cut months: sums per segment over the hour index.
    rollup = dict(
        UsageMonth.objects.filter(tenant_id=tenant_id, month__lte=current.date()).values_list(
            "month", "bytes"
        )
    )
    first = min(
        [current, *(g.start_h for g in grants)]
        + [datetime(m.year, m.month, 1, tzinfo=UTC) for m in rollup]
    )
    months = _months_between(first, current)
    cuts: dict[datetime, set[datetime]] = defaultdict(set)
    for g in grants:
        for point in (g.start_h, g.end_h):
            if point is not None and point < resets_at and month_start(point) != point:
                cuts[month_start(point)].add(point)

    # Balances and the debt at the start of this month are cached under a signature of
    # everything they depend on, so only this month is drawn again on later calls (flat as
    # history grows).
    carried = 0
    checkpoint_key = signature = None
    if len(months) > 1:
        checkpoint_key = f"ledger:v2:checkpoint:{tenant_id}:{current:%Y-%m}"
        signature = _checkpoint_signature(base=base, current=current, rollup=rollup, grants=grants)
        cached = cache.get(checkpoint_key)
        if cached is not None and cached.get("signature") == signature:
            balances = cached["balances"]
            for g in grants:
                if g.created_at < current:
                    g.balance = balances[str(g.id)]
            carried = cached["carried"]
            months = [current]
            checkpoint_key = None

    segments = {
        m: list(itertools.pairwise([m, *sorted(cuts[m]), next_month(m)]))
        for m in months
        if m in cuts
    }
    sums = _segment_sums(tenant_id=tenant_id, segments=segments) if segments else {}

    draw = _MonthDraw(carried_in=0, used=0, bonus_used=0, overspent=0)
    for m in months:
        if m == current and checkpoint_key is not None:
            balances = {str(g.id): g.balance for g in grants if g.created_at < current}
            cache.set(
                checkpoint_key,
                {"signature": signature, "balances": balances, "carried": carried},
                _CHECKPOINT_SECONDS,
            )
        if m in segments:
            parts = [(a, sums.get(a, 0)) for a, _b in segments[m]]
        else:
            parts = [(m, rollup.get(m.date(), 0))]
        draw = _draw_month(base=base, month=m, carried_in=carried, segments=parts, grants=grants)
        carried = draw.overspent  # what nothing paid is the next month's debt

    return _result(base=base, current=current, draw=draw, grants=grants, now=now)


def _result(
    *, base: int, current: datetime, draw: _MonthDraw, grants: Sequence[_GrantState], now: datetime
) -> MonthSummary:
    """The summary of the current month once it is drawn (``draw``; grants drawn in place)."""
    bonus_left = sum(g.balance for g in grants if g.in_force_at(now))
    remaining = max(0, base - draw.carried_in - draw.used) + bonus_left
    return MonthSummary(
        month_start=current,
        resets_at=next_month(current),
        used=draw.used,
        base=base,
        bonus_used=draw.bonus_used,
        bonus_left=bonus_left,
        remaining=remaining,
        allowance=base + draw.bonus_used + bonus_left,
        overspent=draw.overspent,
        carried_in=draw.carried_in,
    )


def _summary_without_grants(
    *,
    rollup: dict[date, int],
    now: datetime,
    current: datetime,
    months: dict[date, list[datetime]],
) -> MonthSummary:
    """The same rule for a tenant that never had a grant (by now): no month has a cut point,
    so every month is its rollup row, drawn from the base alone, the debt carried along.
    ``months``: the months from a first one to ``current``, by first month (shared)."""
    base = settings.QUOTA_MONTHLY_BYTES
    first = min(rollup, default=current.date())
    span = months.get(first)
    if span is None:
        span = months[first] = _months_between(
            datetime(first.year, first.month, 1, tzinfo=UTC), current
        )
    carried = 0
    draw = _MonthDraw(carried_in=0, used=0, bonus_used=0, overspent=0)
    for m in span:
        draw = _draw_month(
            base=base,
            month=m,
            carried_in=carried,
            segments=[(m, rollup.get(m.date(), 0))],
            grants=(),
        )
        carried = draw.overspent
    return _result(base=base, current=current, draw=draw, grants=(), now=now)


def month_summaries(*, tenant_ids: Sequence[int], now: datetime | None = None) -> dict:
    """month_summary of many tenants at once: tenant id -> MonthSummary (ids of tenants that
    do not exist are summarised as tenants without usage).

    Set-based for the tenants without a grant (most of them): two queries, whatever their
    number (their grants, every rollup row of theirs up to this month). A tenant with a grant
    is summarised alone (month_summary: cut points, cached checkpoint), by the same rule.
    """
    now = utc(now or timezone.now())
    ids = sorted(set(tenant_ids))
    if not ids:
        return {}
    current = month_start(now).date()
    with_grants = set(
        Grant.objects.filter(tenant_id__in=ids_in(ids), created_at__lte=now)
        .order_by()
        .values_list("tenant_id", flat=True)
        .distinct()
    )
    rollups: dict[int, dict[date, int]] = defaultdict(dict)
    plain = [i for i in ids if i not in with_grants]
    for tenant_id, month, nbytes in UsageMonth.objects.filter(
        tenant_id__in=ids_in(plain), month__lte=current
    ).values_list("tenant_id", "month", "bytes"):
        rollups[tenant_id][month] = nbytes
    start = month_start(now)
    months: dict[date, list[datetime]] = {}
    summaries = {
        t: _summary_without_grants(rollup=rollups[t], now=now, current=start, months=months)
        for t in plain
    }
    for tenant_id in sorted(with_grants):
        summaries[tenant_id] = _summary(tenant_id=tenant_id, now=now)
    return summaries


def month_summary(*, tenant: Tenant | int, now: datetime | None = None) -> MonthSummary:
    """The tenant's month at `now` (default: now), by the rule in this module's docstring."""
    tenant_id = tenant if isinstance(tenant, int) else tenant.pk
    return _summary(tenant_id=tenant_id, now=utc(now or timezone.now()))


def is_exhausted(*, tenant: Tenant | int, now: datetime | None = None) -> bool:
    return month_summary(tenant=tenant, now=now).exhausted
