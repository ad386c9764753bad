"""Large sets of numbers in queries without one placeholder (or one driver-quoted array
element) per number: PostgreSQL splits one comma-separated text parameter itself."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime

from django.db import connection
from django.db.models.expressions import RawSQL


def ids_in(ids: Iterable[int]) -> list[int] | RawSQL:
    """The right-hand side of an ``__in`` lookup for many ids (``pk__in=ids_in(ids)``).

    On PostgreSQL the ids travel as one comma-separated parameter that the server splits: a
    list of 10,000 placeholders costs the driver more to parse and adapt (in Python) than the
    query costs the server. Other databases get the plain list (keep it to a few thousand).
    """
    ids = [int(i) for i in ids]  # ints only: the text is split and cast by the server
    if connection.vendor != "postgresql":
        return ids
    return RawSQL("SELECT unnest(string_to_array(%s, ',')::bigint[])", [numbers_joined(ids)])


def numbers_joined(numbers: Iterable[int]) -> str:
    """One text parameter for ``string_to_array(%s, ',')::bigint[]``."""
    return ",".join(map(str, numbers))


def day_epoch(day: date) -> int:
    """A UTC day as epoch seconds (``(to_timestamp(%s) AT TIME ZONE 'UTC')::date`` reads it)."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
