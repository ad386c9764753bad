"""The traffic ledger: the one owner of quota arithmetic and of writes to usage and grants.

All amounts are integer bytes. Views, tasks, the API and the dashboard call this module and
never recompute its rules.

The month rule (DESIGN.md section 5), stated precisely
======================================================

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
  between exhaustion and the gate closing, for instance). Overspending is not carried over:
  the next month starts with a fresh base and owes nothing, and no later grant pays for it.
* Unused base does not carry over either. Bonus left at the end of a month carries over until
  the grant expires; an expired grant's balance is gone.
* At an instant ``now``: ``bonus_left`` = the balances of the grants with
  ``created_at <= now`` and no expiry or ``expires_at > now``;
  ``remaining = max(0, B - used this month) + bonus_left``. A tenant is exhausted when
  ``remaining <= 0``. The month's ``allowance`` = B + bonus drawn this month + bonus_left, so
  ``remaining == allowance - used + overspent`` always holds; the 80 % and 100 % emails compare
  the charged usage (``used - overspent``) with the allowance.

How it stays fast (bench/ledger.py prints the figures)
-----------------------------------------------------
Only the instants where the set of grants in force changes (floor_hour of a creation,
ceil_hour of an expiry) and month starts matter, so the computation cuts months at those points
only: a month without such a point is read from the monthly rollup (UsageMonth, one row per
tenant and month, written by usage_apply in the same transaction as the buckets; index
``usage_month_key`` on (tenant, month)), a month with some from the (tenant, hour) index
(``usage_tenant_hour_idx``) as one grouped query. The grant balances at the start of the
current month are cached (Django cache) under a signature of everything they depend on: the
base, the grants made before this month and every earlier month's rollup total. Usage only
grows, so a late batch for an earlier month changes a total and the signature, and the
balances are recomputed. A summary is then three small queries and a cache read, whatever the
length of the history: grants, rollup rows since the first grant, this month's buckets when
this month has a cut point.

Writers must go through usage_apply (never UsageBucket.objects.create / bulk_create), or the
rollup drifts; ``manage.py ledger_rollup_rebuild`` recomputes it from the buckets.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accelerator import services as tenant_services
from accelerator.models import Tenant
from quota.models import Grant, QuotaNotice, UsageBucket, UsageMonth

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)


class LedgerError(ValueError):
    """A ledger call with values it refuses; the message is safe to show to staff."""


# --- time helpers ------------------------------------------------------------------------------


def _utc(dt: datetime) -> datetime:
    if timezone.is_naive(dt):
        raise LedgerError("datetimes must be timezone-aware")
    return dt.astimezone(UTC)


def month_start(dt: datetime) -> datetime:
    return _utc(dt).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(dt: datetime) -> datetime:
    m = month_start(dt)
    return m.replace(year=m.year + 1, month=1) if m.month == 12 else m.replace(month=m.month + 1)


def floor_hour(dt: datetime) -> datetime:
    return _utc(dt).replace(minute=0, second=0, microsecond=0)


def ceil_hour(dt: datetime) -> datetime:
    floored = floor_hour(dt)
    return floored if floored == _utc(dt) else floored + HOUR


# --- writes: usage -----------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageDelta:
    tenant_id: int
    edge: str
    hour: datetime  # aware UTC, truncated to the hour
    bytes: int
    requests: int
    cache_hits: int = 0


def usage_apply(*, deltas: Iterable[UsageDelta]) -> None:
    """Add a batch of per-bucket deltas in one transaction (upsert, no lost update).

    Joins the caller's transaction when there is one, so ingestion can commit its file
    position together with the usage it produced. Rows are written in key order (buckets,
    then monthly rollups) so that two concurrent writers cannot deadlock. The monthly rollup
    (UsageMonth) is updated in the same transaction: the two tables always agree.
    """
    # One row per key: an upsert statement may not touch the same row twice.
    buckets: dict[tuple[int, str, datetime], list[int]] = {}
    for d in deltas:
        total = buckets.setdefault((d.tenant_id, d.edge, d.hour), [0, 0, 0])
        total[0] += d.bytes
        total[1] += d.requests
        total[2] += d.cache_hits
    if not buckets:
        return
    rows = [(*key, *buckets[key]) for key in sorted(buckets)]
    months: dict[tuple[int, date], int] = defaultdict(int)
    for tenant_id, _edge, hour, nbytes, _requests, _hits in rows:
        months[(tenant_id, month_start(hour).date())] += nbytes
    month_rows = sorted(months.items())
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _upsert_set_based(cursor, rows, month_rows)
        else:
            _upsert_row_by_row(cursor, rows, month_rows)


_BUCKET_UPDATE = (
    "ON CONFLICT (tenant_id, edge, hour) DO UPDATE SET "
    "bytes = {t}.bytes + EXCLUDED.bytes, "
    "requests = {t}.requests + EXCLUDED.requests, "
    "cache_hits = {t}.cache_hits + EXCLUDED.cache_hits"
)
_MONTH_UPDATE = "ON CONFLICT (tenant_id, month) DO UPDATE SET bytes = {t}.bytes + EXCLUDED.bytes"


def _upsert_set_based(cursor, rows, month_rows) -> None:
    """PostgreSQL: one statement per table over arrays (unnest), whatever the batch size.

    A batch of tens of thousands of buckets costs one round trip instead of one per row, which
    is what keeps ingestion above its lines-per-second target (bench/ingest.py).
    """
    table = UsageBucket._meta.db_table
    mtable = UsageMonth._meta.db_table
    cursor.execute(
        f"INSERT INTO {table} (tenant_id, edge, hour, bytes, requests, cache_hits) "
        "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::bigint[], "
        "%s::bigint[], %s::bigint[]) " + _BUCKET_UPDATE.format(t=table),
        [list(column) for column in zip(*rows, strict=True)],
    )
    cursor.execute(
        f"INSERT INTO {mtable} (tenant_id, month, bytes) "
        "SELECT * FROM unnest(%s::bigint[], %s::date[], %s::bigint[]) "
        + _MONTH_UPDATE.format(t=mtable),
        [
            [t for (t, _m), _b in month_rows],
            [m for (_t, m), _b in month_rows],
            [b for _key, b in month_rows],
        ],
    )


def _upsert_row_by_row(cursor, rows, month_rows) -> None:
    """Other databases (SQLite for `make run`): the same upsert, one row at a time."""
    table = UsageBucket._meta.db_table
    mtable = UsageMonth._meta.db_table
    # Adapted as the ORM does, so raw rows compare equal to ORM lookups (SQLite stores
    # datetimes as text).
    adapt_dt = connection.ops.adapt_datetimefield_value
    adapt_d = connection.ops.adapt_datefield_value
    cursor.executemany(
        f"INSERT INTO {table} (tenant_id, edge, hour, bytes, requests, cache_hits) "
        "VALUES (%s, %s, %s, %s, %s, %s) " + _BUCKET_UPDATE.format(t=table),
        [(t, e, adapt_dt(h), b, r, c) for t, e, h, b, r, c in rows],
    )
    cursor.executemany(
        f"INSERT INTO {mtable} (tenant_id, month, bytes) VALUES (%s, %s, %s) "
        + _MONTH_UPDATE.format(t=mtable),
        [(t, adapt_d(m), b) for (t, m), b in month_rows],
    )


def usage_rollup_rebuild(*, tenant_ids: Sequence[int] | None = None) -> int:
    """Recompute UsageMonth from UsageBucket (operators: after restoring buckets by hand).

    Returns the number of rollup rows written. Takes a table lock on the rollup so that
    usage_apply waits instead of interleaving.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    f"LOCK TABLE {UsageMonth._meta.db_table} IN SHARE ROW EXCLUSIVE MODE"
                )
        buckets = UsageBucket.objects.all()
        months = UsageMonth.objects.all()
        if tenant_ids is not None:
            buckets = buckets.filter(tenant_id__in=tenant_ids)
            months = months.filter(tenant_id__in=tenant_ids)
        totals: dict[tuple[int, date], int] = defaultdict(int)
        for tenant_id, hour, nbytes in buckets.values_list("tenant_id", "hour", "bytes").iterator(
            chunk_size=10_000
        ):
            totals[(tenant_id, month_start(hour).date())] += nbytes
        months.delete()
        UsageMonth.objects.bulk_create(
            [UsageMonth(tenant_id=t, month=m, bytes=b) for (t, m), b in totals.items()],
            batch_size=5_000,
        )
    return len(totals)


# --- reads: the month summary ------------------------------------------------------------------


@dataclass(frozen=True)
class MonthSummary:
    """A tenant's month at an instant. Integer bytes throughout."""

    month_start: datetime
    resets_at: datetime
    used: int  # everything served this month
    base: int
    bonus_used: int  # drawn from grants this month
    bonus_left: int  # unspent, unexpired grant balance now
    remaining: int  # max(0, base - used) + bonus_left
    allowance: int  # base + bonus_used + bonus_left
    overspent: int  # usage this month that nothing paid for

    @property
    def base_left(self) -> int:
        return max(0, self.base - self.used)

    @property
    def exhausted(self) -> bool:
        return self.remaining <= 0

    @property
    def charged(self) -> int:
        """The part of `used` that the base and grants paid for (= allowance - remaining)."""
        return self.used - self.overspent

    @property
    def percent_used(self) -> int:
        """Whole percent of the allowance spent, 0..100 (floored; 100 only when exhausted).

        Counts what was charged: bytes overspent before a later grant arrived do not make a
        fresh grant look spent.
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
    used: int
    bonus_used: int
    overspent: int


def _draw_month(
    *, base: int, segments: Sequence[tuple[datetime, int]], grants: Sequence[_GrantState]
) -> _MonthDraw:
    """Draw one month's segments (start, bytes), in time order, from base then grants.

    Grants must be in priority order; their balances are reduced in place. Every segment lies
    between two consecutive cut points, so the grants in force are the same for all of it.
    """
    used = bonus_used = overspent = 0
    for start, nbytes in segments:
        over = max(0, used + nbytes - base) - max(0, used - base)
        used += nbytes
        for grant in grants:
            if over <= 0:
                break
            if grant.balance > 0 and grant.covers(start):
                take = min(grant.balance, over)
                grant.balance -= take
                over -= take
                bonus_used += take
        overspent += over
    return _MonthDraw(used=used, bonus_used=bonus_used, overspent=overspent)


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
    """Everything the balances at the start of `current` depend on.

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
    # Grants that all ended before this month cannot pay for anything any more.
    if not any(g.end_h is None or g.end_h > current for g in grants):
        grants = []
    grants.sort(key=lambda g: g.priority)

    first = min((g.start_h for g in grants), default=current)
    months = _months_between(first, current)
    cuts: dict[datetime, set[datetime]] = defaultdict(set)
    for g in grants:
        for point in (g.start_h, g.end_h):
            if point is not None and point < resets_at and month_start(point) != point:
                cuts[month_start(point)].add(point)

    # Uncut months: one rollup row each. Cut months: sums per segment over the hour index.
    rollup = dict(
        UsageMonth.objects.filter(tenant_id=tenant_id, month__gte=months[0].date())
        .filter(month__lte=current.date())
        .values_list("month", "bytes")
    )
    # Balances at the start of this month are cached under a signature of everything they
    # depend on, so only this month is drawn again on later calls (flat as history grows).
    checkpoint_key = signature = None
    if len(months) > 1:
        checkpoint_key = f"ledger:v1:balances:{tenant_id}:{current:%Y-%m}"
        signature = _checkpoint_signature(base=base, current=current, rollup=rollup, grants=grants)
        cached = cache.get(checkpoint_key)
        if cached is not None and cached.get("signature") == signature:
            balances = cached["balances"]
            for g in grants:
                if g.created_at < current:
                    g.balance = balances[str(g.id)]
            months = [current]
            checkpoint_key = None

    segments = {
        m: list(itertools.pairwise([m, *sorted(cuts[m]), next_month(m)]))
        for m in months
        if m in cuts
    }
    sums = _segment_sums(tenant_id=tenant_id, segments=segments) if segments else {}

    draw = _MonthDraw(used=0, bonus_used=0, overspent=0)
    for m in months:
        if m == current and checkpoint_key is not None:
            balances = {str(g.id): g.balance for g in grants if g.created_at < current}
            cache.set(
                checkpoint_key,
                {"signature": signature, "balances": balances},
                _CHECKPOINT_SECONDS,
            )
        if m in segments:
            parts = [(a, sums.get(a, 0)) for a, _b in segments[m]]
        else:
            parts = [(m, rollup.get(m.date(), 0))]
        draw = _draw_month(base=base, segments=parts, grants=grants)

    bonus_left = sum(g.balance for g in grants if g.in_force_at(now))
    remaining = max(0, base - draw.used) + bonus_left
    return MonthSummary(
        month_start=current,
        resets_at=resets_at,
        used=draw.used,
        base=base,
        bonus_used=draw.bonus_used,
        bonus_left=bonus_left,
        remaining=remaining,
        allowance=base + draw.bonus_used + bonus_left,
        overspent=draw.overspent,
    )


def month_summary(*, tenant: Tenant | int, now: datetime | None = None) -> MonthSummary:
    """The tenant's month at `now` (default: now), by the rule in this module's docstring."""
    tenant_id = tenant if isinstance(tenant, int) else tenant.pk
    return _summary(tenant_id=tenant_id, now=_utc(now or timezone.now()))


def is_exhausted(*, tenant: Tenant | int, now: datetime | None = None) -> bool:
    return month_summary(tenant=tenant, now=now).exhausted


@dataclass(frozen=True)
class DayUsage:
    day: date
    bytes: int
    requests: int
    cache_hits: int


def usage_daily(
    *, tenant: Tenant | int, days: int = 30, now: datetime | None = None
) -> list[DayUsage]:
    """One entry per UTC day, oldest first, the last `days` days up to and including today."""
    if days < 1 or days > 366:
        raise LedgerError("days must be between 1 and 366")
    tenant_id = tenant if isinstance(tenant, int) else tenant.pk
    now = _utc(now or timezone.now())
    first = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = (
        UsageBucket.objects.filter(tenant_id=tenant_id, hour__gte=first, hour__lte=now)
        .annotate(day=TruncDate("hour", tzinfo=UTC))
        .values("day")
        .annotate(b=Sum("bytes"), r=Sum("requests"), c=Sum("cache_hits"))
        .order_by()
    )
    by_day = {row["day"]: row for row in rows}
    result = []
    for i in range(days):
        d = (first + timedelta(days=i)).date()
        row = by_day.get(d, {})
        result.append(
            DayUsage(
                day=d,
                bytes=row.get("b") or 0,
                requests=row.get("r") or 0,
                cache_hits=row.get("c") or 0,
            )
        )
    return result


def grants_for_tenant(*, tenant: Tenant | int, now: datetime | None = None) -> list[Grant]:
    """The tenant's grants, newest first (the console's list)."""
    tenant_id = tenant if isinstance(tenant, int) else tenant.pk
    now = _utc(now or timezone.now())
    return list(
        Grant.objects.filter(tenant_id=tenant_id, created_at__lte=now).order_by(
            "-created_at", "-id"
        )
    )


# --- writes: grants ----------------------------------------------------------------------------


def grant_create(
    *,
    tenant: Tenant | int,
    kind: str,
    bytes: int,  # noqa: A002 - the interface other apps code against
    source_key: str,
    expires_at: datetime | None = None,
    note: str = "",
    created_by=None,
    now: datetime | None = None,
) -> Grant:
    """Grant bonus traffic. Idempotent on `source_key`: a second call with the same key changes
    nothing and returns the first grant. Re-opens an exhausted tenant whose remaining becomes
    positive. Raises LedgerError for values it refuses.
    """
    tenant_id = tenant if isinstance(tenant, int) else tenant.pk
    if kind not in Grant.Kind.values:
        raise LedgerError(f"unknown grant kind {kind!r}")
    if isinstance(bytes, bool) or not isinstance(bytes, int) or bytes <= 0:
        raise LedgerError("a grant must be a positive whole number of bytes")
    if bytes > 10**18:
        raise LedgerError("a grant cannot exceed 1 EB")
    source_key = (source_key or "").strip()
    if not source_key or len(source_key) > 200:
        raise LedgerError("a grant needs a source key of 1 to 200 characters")
    now = _utc(now or timezone.now())
    if expires_at is not None and _utc(expires_at) <= now:
        raise LedgerError("a grant's expiry must be in the future")

    existing = Grant.objects.filter(source_key=source_key).first()
    if existing is not None:
        return existing
    # Checked here: PostgreSQL checks the foreign key only at commit.
    if not Tenant.objects.filter(pk=tenant_id).exists():
        raise LedgerError("no such tenant")
    try:
        with transaction.atomic():
            grant = Grant.objects.create(
                tenant_id=tenant_id,
                kind=kind,
                bytes=bytes,
                source_key=source_key,
                created_at=now,
                expires_at=expires_at,
                note=note,
                created_by=created_by,
            )
    except IntegrityError:
        # The same key, created concurrently: that grant is the one.
        existing = Grant.objects.filter(source_key=source_key).first()
        if existing is None:
            raise
        return existing
    log.info("grant %s: %s B %s to tenant %s", source_key, bytes, kind, tenant_id)
    tenant_enforce(tenant_id=tenant_id, now=now)
    return grant


# --- enforcement and thresholds ----------------------------------------------------------------


def tenant_enforce(*, tenant_id: int, now: datetime | None = None) -> MonthSummary | None:
    """Bring a tenant's exhausted state and threshold notices in line with its summary.

    Idempotent. Holds the tenant row lock while it reads and writes, so two workers evaluating
    the same tenant take turns and the later one sees everything the earlier one saw; a worker
    that committed usage after this read calls it again afterwards. Emails go out by a task
    after commit. Returns None for a tenant that no longer exists.
    """
    now = _utc(now or timezone.now())
    with transaction.atomic():
        locked = (
            Tenant.objects.select_for_update(no_key=True)
            .filter(pk=tenant_id)
            .values_list("pk", "exhausted_at")
            .first()
        )
        if locked is None:
            return None
        was_exhausted = locked[1] is not None
        summary = _summary(tenant_id=tenant_id, now=now)
        # Under the lock the state read above is current: write only when it changes.
        if summary.exhausted and not was_exhausted:
            tenant_services.tenant_mark_exhausted(tenant_id=tenant_id, at=now)
            log.info("tenant %s exhausted (used %s B)", tenant_id, summary.used)
        elif was_exhausted and not summary.exhausted:
            tenant_services.tenant_clear_exhausted(tenant_id=tenant_id)
            log.info("tenant %s re-opened (remaining %s B)", tenant_id, summary.remaining)
        _notices_record(tenant_id=tenant_id, summary=summary, now=now)
    return summary


def _notices_record(*, tenant_id: int, summary: MonthSummary, now: datetime) -> None:
    """Insert this month's threshold rows that are due; the unique key makes each happen once."""
    reached = []
    if summary.charged > 0 and summary.charged * 5 >= summary.allowance * 4:
        reached.append(QuotaNotice.Threshold.WARN)
    if summary.exhausted:
        reached.append(QuotaNotice.Threshold.EXHAUSTED)
    if not reached:
        return
    month = summary.month_start.date()
    existing = set(
        QuotaNotice.objects.filter(
            tenant_id=tenant_id, month=month, threshold__in=reached
        ).values_list("threshold", flat=True)
    )
    if existing.issuperset(reached):
        return
    top = max(reached)
    for threshold in reached:
        status = QuotaNotice.Status.PENDING if threshold == top else QuotaNotice.Status.SKIPPED
        notice, created = QuotaNotice.objects.get_or_create(
            tenant_id=tenant_id,
            month=month,
            threshold=threshold,
            defaults={"status": status, "created_at": now},
        )
        if created and status == QuotaNotice.Status.PENDING:
            _enqueue_notice(notice.pk)


def _enqueue_notice(notice_id: int) -> None:
    from quota.tasks import quota_notice_send

    transaction.on_commit(lambda: quota_notice_send.delay(notice_id))


def usage_after_batch(*, tenant_ids: Iterable[int]) -> None:
    """Called by ingestion after it committed a batch: enforcement, threshold emails and the
    first-usage invite credit for each tenant. Idempotent; safe from two workers at once.
    """
    from accounts.services import invite_credit

    ids = sorted(set(tenant_ids))
    for tenant_id in ids:
        tenant_enforce(tenant_id=tenant_id)
    user_ids = Tenant.objects.filter(
        pk__in=ids, user__invited_by__isnull=False, user__invited_by__credited_at__isnull=True
    )
    for user_id in user_ids.values_list("user_id", flat=True):
        invite_credit(invitee_id=user_id)


@dataclass(frozen=True)
class ReconcileResult:
    evaluated: int
    exhausted: int
    notices_requeued: int
    invites_credited: int


def ledger_reconcile(*, now: datetime | None = None) -> ReconcileResult:
    """The backstop: re-evaluate every tenant whose state can differ from its summary (a new
    month, an expired grant, a missed batch), re-queue notices whose email never left, and
    credit invites whose first usage was missed. Idempotent.

    Only tenants that are exhausted now or have used at least 80 % of the base this month can
    be exhausted or owe a threshold email (the allowance is never below the base), so the
    rollup index finds them without reading every tenant.
    """
    from accounts.services import invites_credit_pending

    now = _utc(now or timezone.now())
    month = month_start(now).date()
    threshold = settings.QUOTA_MONTHLY_BYTES * 4 // 5
    candidates = set(
        Tenant.objects.filter(exhausted_at__isnull=False).values_list("pk", flat=True)
    ) | set(
        UsageMonth.objects.filter(month=month, bytes__gte=threshold).values_list(
            "tenant_id", flat=True
        )
    )
    exhausted = 0
    for tenant_id in sorted(candidates):
        summary = tenant_enforce(tenant_id=tenant_id, now=now)
        exhausted += bool(summary and summary.exhausted)
    stale = QuotaNotice.objects.filter(
        status__in=[QuotaNotice.Status.PENDING, QuotaNotice.Status.SENDING],
        created_at__lt=now - timedelta(minutes=10),
    ).values_list("pk", flat=True)
    requeued = 0
    stale = list(stale)
    for notice_id in stale:
        # A "sending" row older than ten minutes belongs to a worker that died mid-send.
        QuotaNotice.objects.filter(pk=notice_id, status=QuotaNotice.Status.SENDING).update(
            status=QuotaNotice.Status.PENDING
        )
        _enqueue_notice(notice_id)
        requeued += 1
    credited = invites_credit_pending(now=now)
    return ReconcileResult(
        evaluated=len(candidates),
        exhausted=exhausted,
        notices_requeued=requeued,
        invites_credited=credited,
    )
