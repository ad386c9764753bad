"""Reads of the ledger's rows: the usage time series, the grants a tenant can see, and the
tenants that can bring a debt into a month (the candidates the backstop and the dashboard ask
the month rule about).

The one usage series (per hour or per UTC day, one tenant or all of them) serves the console,
the API and the staff dashboard; the month's arithmetic is quota/month.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db.models import QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from accelerator.models import Tenant
from quota.errors import LedgerError
from quota.models import Grant, QuotaNotice, UsageBucket, UsageMonth
from quota.periods import HOUR, month_start, utc

GRANULARITIES = ("hour", "day")


@dataclass(frozen=True)
class UsagePoint:
    start: datetime  # aware UTC, the first instant of the hour or day
    bytes: int
    requests: int
    cache_hits: int


def usage_series(
    *, tenant: Tenant | int | None, start: date, end: date, granularity: str
) -> list[UsagePoint]:
    """Traffic per hour or per UTC day from `start` to `end` inclusive, oldest first.

    `tenant=None` sums every tenant (the staff dashboard). Every period is present, with
    zeros where there was no traffic. The caller bounds the range; this function trusts it.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(granularity)
    since = datetime.combine(start, time.min, tzinfo=UTC)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    trunc = TruncHour("hour", tzinfo=UTC) if granularity == "hour" else TruncDay("hour", tzinfo=UTC)
    buckets = UsageBucket.objects.filter(hour__gte=since, hour__lt=until)
    if tenant is not None:
        buckets = buckets.filter(tenant_id=tenant if isinstance(tenant, int) else tenant.pk)
    rows = (
        buckets.annotate(period=trunc)
        .values("period")
        .annotate(b=Sum("bytes"), r=Sum("requests"), c=Sum("cache_hits"))
        .order_by()
    )
    found = {row["period"]: row for row in rows}
    step = HOUR if granularity == "hour" else timedelta(days=1)
    points = []
    at = since
    while at < until:
        row = found.get(at)
        points.append(
            UsagePoint(
                start=at,
                bytes=int(row["b"]) if row else 0,
                requests=int(row["r"]) if row else 0,
                cache_hits=int(row["c"]) if row else 0,
            )
        )
        at += step
    return points


@dataclass(frozen=True)
class RegistryUsage:
    registry: str  # docker.io or a name in UPSTREAMS
    bytes: int
    requests: int
    cache_hits: int


def usage_by_registry(*, tenant: Tenant | int, start: date, end: date) -> list[RegistryUsage]:
    """A tenant's traffic from `start` to `end` (UTC days, inclusive) split by registry, most
    bytes first. Only registries that served bytes: refusals (a registry the edge does not
    mirror among them) are free and not a split of anything."""
    since = datetime.combine(start, time.min, tzinfo=UTC)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    rows = (
        UsageBucket.objects.filter(
            tenant_id=tenant if isinstance(tenant, int) else tenant.pk,
            hour__gte=since,
            hour__lt=until,
        )
        .values("registry")
        .annotate(b=Sum("bytes"), r=Sum("requests"), c=Sum("cache_hits"))
        .filter(b__gt=0)
        .order_by("-b", "registry")
    )
    return [
        RegistryUsage(row["registry"], int(row["b"]), int(row["r"]), int(row["c"])) for row in rows
    ]


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
    today = utc(now or timezone.now()).date()
    points = usage_series(
        tenant=tenant, start=today - timedelta(days=days - 1), end=today, granularity="day"
    )
    return [DayUsage(p.start.date(), p.bytes, p.requests, p.cache_hits) for p in points]


def grants_for_tenant(*, tenant: Tenant | int, now: datetime | None = None) -> QuerySet[Grant]:
    """The tenant's grants made by `now` (default: now), newest first (console and API).

    A grant dated later is not visible yet, as in the month rule.
    """
    tenant_id = tenant if isinstance(tenant, int) else tenant.pk
    now = utc(now or timezone.now())
    return Grant.objects.filter(tenant_id=tenant_id, created_at__lte=now).order_by(
        "-created_at", "-id"
    )


def tenants_maybe_in_debt(*, month: date) -> set[int]:
    """A superset of the tenants that bring a debt into `month` (the first of a UTC month).

    By quota/month.py a month ends in debt only when its usage passed the base, or when it
    began in debt and was exhausted during it. The first: last month's rollup above the base
    (the rollup's (month) index). The second: the tenant was one of these candidates
    all last month, so the backstop (quota/settlement.py) or the settlement of the batch that
    exhausted it saw it exhausted and recorded last month's 100 % notice (this read has no
    index of its own; the table holds at most two rows per tenant and month, for tenants that
    reached 80 %). One gap: when the exhausting bytes were ingested only after last month
    ended, no notice names it; that batch's settlement evaluates the tenant in this month.
    """
    previous = month_start(datetime.combine(month, time.min, tzinfo=UTC) - HOUR).date()
    over = UsageMonth.objects.filter(month=previous, bytes__gt=settings.QUOTA_MONTHLY_BYTES)
    exhausted = QuotaNotice.objects.filter(
        month=previous, threshold=QuotaNotice.Threshold.EXHAUSTED
    )
    return set(over.values_list("tenant_id", flat=True)) | set(
        exhausted.values_list("tenant_id", flat=True)
    )
