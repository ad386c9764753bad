"""Whose traffic a batch is: labels resolved to tenants, and the rest kept as UnknownTraffic.

Invariants:
- The meter's rule: every 200/206 byte is charged to the tenant its label was issued to,
  whenever the line was stamped. Labels are never reissued, so a label maps to one tenant
  forever: a current Tenant.label and a RetiredLabel both charge their tenant; anything else
  is UnknownTraffic (per edge, label and day). The retirement time never decides charging (a
  download started before "Rotate" is stamped when it ends; the edge serves the old label
  until its next gate sync).
- Lines of a retired label stamped at or after its retirement are ALSO kept as UnknownTraffic
  flagged retired: staff see clients still configured with the old address. Only that view
  needs the retirement time, so the parser splits those lines off (Batch.late) for the
  retirements of the last days it was given.
- Redo keeps that view exact and never changes a charge: when a retirement falls inside an
  hour of the batch and the parse did not know it (a label retired while the batch was
  parsed, or long ago), resolution raises Redo before anything is written; the caller rolls
  the transaction back and parses again with that retirement time. Each line is in exactly
  one bucket (usage or late) and each bucket is charged once, so a batch charges every byte
  exactly once, with or without a Redo.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

from django.db import connection

from accelerator.models import RetiredLabel, Tenant
from ingest import parser
from ingest.models import UnknownTraffic

# (tenant id, hour index) -> [charged bytes, requests, cache hits]
Charged = dict[tuple[int, float, str], list[int]]  # (tenant id, hour, registry)
# (label, hour index, the label was retired) -> [200/206 bytes, requests, cache hits]; a retired
# label's bytes here are charged to its tenant too
Unknown = dict[tuple[str, float, bool], list[int]]

_PLAIN_LABEL = re.compile(r"[a-z0-9-]{0,63}")


class Redo(Exception):
    """A label's retirement falls inside an hour of this batch and the parse did not know it:
    parse again with its retirement time (rolls the transaction back first). Charging does
    not depend on it; staff's view of a retired label's late traffic does."""

    def __init__(self, labels: dict[str, float]) -> None:
        super().__init__(sorted(labels))
        self.labels = labels


def labels_retired(*, since: datetime | None = None, labels: Iterable[str] = ()) -> dict:
    """Retired label -> its retirement time (epoch), as the parser takes them."""
    qs = RetiredLabel.objects.all()
    if since is not None:
        qs = qs.filter(retired_at__gte=since)
    if labels:
        qs = qs.filter(label__in=list(labels))
    return {label: at.timestamp() for label, at in qs.values_list("label", "retired_at")}


class LabelCache:
    """Current labels -> tenant id, as one ingestion run found them. Labels are never
    reissued, so a label found current is its tenant's for good; what can change is its
    retirement, which labels_resolve asks the database for in every batch (and which wins).
    A run's cache saves looking up the same thousands of tenants batch after batch."""

    def __init__(self) -> None:
        self.current: dict[str, int] = {}


def labels_resolve(
    *, batch: parser.Batch, retired: dict[str, float], cache: LabelCache | None = None
) -> tuple[Charged, Unknown]:
    """Split a batch's buckets into the tenants' usage and unknown traffic, by the labels as
    they are committed now: every bucket of a current or retired label is charged to its
    tenant once; a retired label's lines after its retirement are unknown traffic as well.
    Raises Redo (nothing written yet) when a label's retirement falls inside an hour of this
    batch and the batch was parsed without knowing it."""
    labels = {key[0] for key in batch.usage} | {key[0] for key in batch.late}
    if cache is None:
        current, gone = _labels_lookup(sorted(labels))
    else:
        # Retirements are asked for every label, every batch; tenants only for new labels.
        names = _plain(sorted(labels))
        cache.current.update(_current_lookup([n for n in names if n not in cache.current]))
        current, gone = cache.current, _retired_lookup(names)
    charged: Charged = defaultdict(lambda: [0, 0, 0])
    unknown: Unknown = defaultdict(lambda: [0, 0, 0])
    redo: dict[str, float] = {}

    def add(target: list[int], acc: list[int]) -> None:
        target[0] += acc[0]
        target[1] += acc[1]
        target[2] += acc[2]

    for (label, hour, registry), acc in batch.usage.items():
        tenant = current.get(label)
        if tenant is not None and label not in gone:  # (never both, but a cache may lag)
            # The common case, thousands of times a batch: no call per bucket.
            key = (tenant, hour, registry)
            total = charged.get(key)
            if total is None:
                charged[key] = acc[:3]
            else:
                total[0] += acc[0]
                total[1] += acc[1]
                total[2] += acc[2]
            continue
        if label not in gone:
            add(unknown[(label, hour, False)], acc)
            continue
        tenant_id, cutoff = gone[label]
        add(
            charged[(tenant_id, hour, registry)], acc
        )  # whenever stamped: the label is its, forever
        if retired.get(label) == cutoff or (hour + 1) * parser.HOUR <= cutoff:
            continue  # split by line when parsed, or the whole hour is before retirement
        if hour * parser.HOUR >= cutoff:
            add(unknown[(label, hour, True)], acc)  # the whole hour after: staff see it too
        else:
            redo[label] = cutoff  # which side of the cutoff, for staff's view only
    for (label, hour, registry), acc in batch.late.items():
        if label in gone and retired.get(label) == gone[label][1]:
            add(charged[(gone[label][0], hour, registry)], acc)
            add(unknown[(label, hour, True)], acc)
        else:  # the retirement we parsed with changed; parse again with the committed one
            redo[label] = gone[label][1] if label in gone else float("inf")
    if redo:
        raise Redo(redo)
    return charged, unknown


def unknown_traffic_add(*, edge: str, unknown: Unknown) -> int:
    """Add unknown traffic to its per-day rows (caller's transaction). Returns its requests."""
    if not unknown:
        return 0
    days: dict[tuple[str, object], list] = {}
    for (label, hour, was_retired), acc in unknown.items():
        at = datetime.fromtimestamp(hour * parser.HOUR, tz=UTC)
        key = (_storable_label(label), at.date())
        row = days.setdefault(key, [0, 0, at, False])
        row[0] += acc[1]
        row[1] += acc[0]
        row[2] = max(row[2], at)
        row[3] = row[3] or was_retired
    table = UnknownTraffic._meta.db_table
    update = (
        "ON CONFLICT (edge, label, day) DO UPDATE SET "
        f"requests = {table}.requests + EXCLUDED.requests, "
        f"bytes = {table}.bytes + EXCLUDED.bytes, "
        f"retired = {table}.retired OR EXCLUDED.retired, "
        f"last_hour = CASE WHEN EXCLUDED.last_hour > {table}.last_hour "
        f"THEN EXCLUDED.last_hour ELSE {table}.last_hour END"
    )
    rows = [
        (edge, label, day, retired, requests, nbytes, last)
        for (label, day), (requests, nbytes, last, retired) in sorted(days.items())
    ]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One statement however many labels (scanners try thousands of made-up ones).
            _e, labels, days_, retireds, requests_, bytes_, lasts = zip(*rows, strict=True)
            cursor.execute(
                f"INSERT INTO {table} (edge, label, day, retired, requests, bytes, last_hour) "
                "SELECT %s, l, d, r, q, b, h FROM unnest(%s::text[], %s::date[], "
                "%s::boolean[], %s::bigint[], %s::bigint[], %s::timestamptz[]) "
                "AS u(l, d, r, q, b, h) " + update,
                [edge, list(labels), list(days_), list(retireds), list(requests_), list(bytes_),
                 list(lasts)],
            )  # fmt: skip
        else:
            cursor.executemany(
                f"INSERT INTO {table} (edge, label, day, retired, requests, bytes, last_hour) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) " + update,
                rows,
            )
    return sum(r[4] for r in rows)


def _storable_label(label: str) -> str:
    """Labels come from the Host header as nginx matched it, but the log is not trusted:
    anything unusual is stored escaped (NUL, for one, cannot be stored at all)."""
    if _PLAIN_LABEL.fullmatch(label):
        return label
    return repr(label)[1:-1][:63]


def _plain(names: list[str]) -> list[str]:
    # Only a plain label can be a tenant's; anything else (upper case, NUL, which PostgreSQL
    # cannot even take as a parameter) is unknown without asking the database.
    return [n for n in names if n and _PLAIN_LABEL.fullmatch(n)]


def _labels_lookup(names: list[str]) -> tuple[dict[str, int], dict[str, tuple[int, float]]]:
    """Current labels -> tenant id; retired labels -> (tenant id, retirement epoch)."""
    names = _plain(names)
    return _current_lookup(names), _retired_lookup(names)


def _current_lookup(names: list[str]) -> dict[str, int]:
    """Current labels -> tenant id (``names`` plain: _plain)."""
    if not names:
        return {}
    if connection.vendor == "postgresql":
        # One round trip, however many labels a batch has: the labels travel as one
        # comma-separated parameter (a plain label has no comma) that the server splits; the
        # driver's array adaptation quotes element by element in Python.
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT label, id FROM {Tenant._meta.db_table} "
                "WHERE label = ANY(string_to_array(%s, ','))",
                [",".join(names)],
            )
            return dict(cursor.fetchall())
    current: dict[str, int] = {}
    for i in range(0, len(names), 2000):  # bounded IN lists (SQLite's variable limit)
        current.update(
            Tenant.objects.filter(label__in=names[i : i + 2000]).values_list("label", "pk")
        )
    return current


def _retired_lookup(names: list[str]) -> dict[str, tuple[int, float]]:
    """Retired labels -> (tenant id, retirement epoch) (``names`` plain: _plain)."""
    if not names:
        return {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT label, tenant_id, retired_at FROM {RetiredLabel._meta.db_table} "
                "WHERE label = ANY(string_to_array(%s, ','))",
                [",".join(names)],
            )
            return {label: (t, at.timestamp()) for label, t, at in cursor.fetchall()}
    gone: dict[str, tuple[int, float]] = {}
    for i in range(0, len(names), 2000):
        for label, tenant_id, at in RetiredLabel.objects.filter(
            label__in=names[i : i + 2000]
        ).values_list("label", "tenant_id", "retired_at"):
            gone[label] = (tenant_id, at.timestamp())
    return gone


# Public name for other ingestion modules (the tenants' activity resolves labels the same way).
labels_lookup = _labels_lookup
