"""Reads of the api app. Every query over tenant data takes the tenant explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour

from accelerator.models import Tenant
from accounts.models import User
from api.models import PersonalAccessToken
from api.tokens import token_digest, token_is_well_formed
from quota.models import UsageBucket


def token_list(*, user: User) -> QuerySet[PersonalAccessToken]:
    return PersonalAccessToken.objects.filter(user=user).order_by("-created_at", "-id")


def token_for_secret(*, raw: str, now: datetime) -> PersonalAccessToken | None:
    """The live token with this secret: well formed, known, not revoked, not expired."""
    if not token_is_well_formed(raw):
        return None
    return (
        PersonalAccessToken.objects.select_related("user")
        .filter(
            digest=token_digest(raw),
            revoked_at__isnull=True,
            expires_at__gt=now,
            user__is_active=True,
        )
        .first()
    )


@dataclass(frozen=True)
class UsagePoint:
    start: datetime
    bytes: int
    requests: int
    cache_hits: int


def usage_series(*, tenant: Tenant, start: date, end: date, granularity: str) -> list[UsagePoint]:
    """Traffic of `tenant` per hour or per day (UTC) from `start` to `end` inclusive.

    Every period is present, with zeros where there was no traffic. The caller bounds the
    range; this function trusts it.
    """
    if granularity not in {"hour", "day"}:
        raise ValueError(granularity)
    since = datetime.combine(start, time.min, tzinfo=UTC)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    trunc = TruncHour("hour", tzinfo=UTC) if granularity == "hour" else TruncDay("hour", tzinfo=UTC)
    rows = (
        UsageBucket.objects.filter(tenant=tenant, hour__gte=since, hour__lt=until)
        .annotate(period=trunc)
        .values("period")
        .annotate(b=Sum("bytes"), r=Sum("requests"), c=Sum("cache_hits"))
        .order_by()
    )
    found = {row["period"]: row for row in rows}
    step = timedelta(hours=1) if granularity == "hour" else timedelta(days=1)
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
