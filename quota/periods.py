"""The ledger's periods: aware UTC instants cut into hours, days and calendar months.

Usage is stored in hourly buckets and the quota runs per UTC calendar month; every module of
the ledger, and every reader of usage, cuts time with these helpers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone

from quota.errors import LedgerError

HOUR = timedelta(hours=1)


def utc(dt: datetime) -> datetime:
    """`dt` in UTC; naive datetimes are refused (they would be read in the server's zone)."""
    if timezone.is_naive(dt):
        raise LedgerError("datetimes must be timezone-aware")
    return dt.astimezone(UTC)


def month_start(dt: datetime) -> datetime:
    return utc(dt).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(dt: datetime) -> datetime:
    m = month_start(dt)
    return m.replace(year=m.year + 1, month=1) if m.month == 12 else m.replace(month=m.month + 1)


def day_start(dt: datetime) -> datetime:
    return utc(dt).replace(hour=0, minute=0, second=0, microsecond=0)


def floor_hour(dt: datetime) -> datetime:
    return utc(dt).replace(minute=0, second=0, microsecond=0)


def ceil_hour(dt: datetime) -> datetime:
    floored = floor_hour(dt)
    return floored if floored == utc(dt) else floored + HOUR
