"""Large id sets in queries without one placeholder per id."""

from __future__ import annotations

from collections.abc import Iterable

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
    return RawSQL("SELECT unnest(string_to_array(%s, ',')::bigint[])", [",".join(map(str, ids))])
