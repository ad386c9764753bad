"""Ingestion: from an edge's access log to the ledger, exactly once.

Invariants:
- A batch is one transaction that holds the edge's EdgeIngest row lock, reads complete lines
  from a LogFile's position, writes their usage through quota.ledger.usage_apply and moves
  the position (compare-and-set). A crash or a kill anywhere rolls the whole batch back; the
  next run reads the same bytes again from the committed position.
- Two workers on one edge: the second finds the row locked and leaves (SKIP LOCKED), so
  they never read the same file at once. The compare-and-set on the position keeps that
  true on databases without row locks (SQLite in development).
- Rotated files are finished before the current file in every run: rename rotation (the old
  inode is found again among the log's siblings, e.g. access.log.1) and copytruncate (the
  copy is found by its head fingerprint; the truncated file starts again from 0).
- Labels are resolved when the batch commits: a current Tenant.label charges its tenant; a
  RetiredLabel charges its tenant for lines stamped before retired_at; anything else is
  UnknownTraffic.

Quota rules stay in quota.ledger: this module only reports usage (usage_apply) and, after
each committed batch, names the tenants that got some (usage_after_batch).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from accelerator.models import RetiredLabel, Tenant
from ingest import parser
from ingest.models import (
    EdgeIngest,
    LogFile,
    MalformedCount,
    MalformedSample,
    UnknownTraffic,
)
from quota import ledger

log = logging.getLogger(__name__)

EDGE_NAME_MAX = EdgeIngest._meta.get_field("edge").max_length
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip")
_REDO_LIMIT = 3
_RETIRED_PRELOAD = timedelta(days=2)
_DONE_KEPT = timedelta(days=7)  # finished cursors stay a while for staff, then go
# While catching up, the ledger hears about the tenants of several batches at once, at least
# this often: enforcement costs per tenant, not per line, and stays within seconds.
_ENFORCE_EVERY = 3.0


class _Redo(Exception):
    """A label was retired inside an hour of this batch after the batch was parsed: parse
    again with its retirement time (rolls the transaction back first)."""

    def __init__(self, labels: dict[str, float]) -> None:
        super().__init__(sorted(labels))
        self.labels = labels


class _PositionMoved(Exception):
    """Another writer moved the position under us (only possible without row locks)."""


@dataclass
class _Step:
    busy: bool = False
    progressed: bool = False  # read lines or changed a cursor: try another step
    caught_up: bool = False
    lines: int = 0
    malformed: int = 0
    unknown: int = 0
    log_bytes: int = 0
    tenant_ids: set[int] = field(default_factory=set)
    buckets: int = 0
    resolve_seconds: float = 0.0
    apply_seconds: float = 0.0


@dataclass
class IngestReport:
    edge: str
    busy: bool = False
    batches: int = 0
    lines: int = 0
    malformed: int = 0
    unknown: int = 0
    log_bytes: int = 0
    seconds: float = 0.0
    enforce_seconds: float = 0.0
    bytes_behind: int = 0
    # Where the time went: label lookups, the ledger's usage_apply (and how many buckets).
    buckets: int = 0
    resolve_seconds: float = 0.0
    apply_seconds: float = 0.0
    caught_up: bool = False  # the last look found nothing but, at most, an unfinished line

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0


# --- the run -----------------------------------------------------------------------------------


def ingest_edge(
    *,
    edge: str,
    path: str | os.PathLike,
    max_seconds: float | None = None,
    batch_lines: int | None = None,
    enforce: bool = True,
) -> IngestReport:
    """Ingest an edge's access log from the saved position until it is caught up or
    ``max_seconds`` have passed. Idempotent; safe from any number of workers at once.

    After committed batches, quota.ledger.usage_after_batch learns the tenants that got usage
    (enforcement, threshold emails, invite credit): when the run is caught up or ends, and
    every few seconds while it catches up; not at all when ``enforce`` is False.
    """
    path = str(path)
    if not edge or len(edge) > EDGE_NAME_MAX:
        raise ValueError(f"an edge name has 1 to {EDGE_NAME_MAX} characters, not {edge!r}")
    if not path or "\x00" in path:
        raise ValueError("the access log path is empty or not a valid path")
    if batch_lines is not None and batch_lines < 1:
        raise ValueError("batch_lines must be at least 1")
    max_seconds = settings.INGEST_RUN_SECONDS if max_seconds is None else max_seconds
    batch_lines = batch_lines or settings.INGEST_BATCH_LINES
    report = IngestReport(edge=edge)
    started = time.monotonic()
    EdgeIngest.objects.get_or_create(edge=edge, defaults={"path": path})
    retired = _retired_map(since=timezone.now() - _RETIRED_PRELOAD)
    redos = 0
    pending: set[int] = set()
    enforced = time.monotonic()
    while True:
        try:
            step = _step(edge=edge, path=path, retired=retired, batch_lines=batch_lines)
        except _Redo as redo:
            redos += 1
            if redos > _REDO_LIMIT:
                raise
            retired.update(redo.labels)
            continue
        except _PositionMoved:
            report.busy = True
            break
        except Exception as exc:  # rolled back: nothing counted; staff see why on the dashboard
            _note_error(edge=edge, message=f"batch failed: {exc!r}")
            if enforce and pending:
                _after_batch(edge=edge, tenant_ids=pending)
            raise
        if step.busy:
            report.busy = True
            break
        if step.lines or step.malformed:
            report.batches += 1
        report.lines += step.lines
        report.malformed += step.malformed
        report.unknown += step.unknown
        report.log_bytes += step.log_bytes
        report.buckets += step.buckets
        report.resolve_seconds += step.resolve_seconds
        report.apply_seconds += step.apply_seconds
        pending |= step.tenant_ids
        report.caught_up = step.caught_up
        last = not step.progressed or time.monotonic() - started >= max_seconds
        if enforce and pending and (last or time.monotonic() - enforced >= _ENFORCE_EVERY):
            report.enforce_seconds += _after_batch(edge=edge, tenant_ids=pending)
            pending = set()
            enforced = time.monotonic()
        if last:
            break
    if enforce and pending:  # a busy or moved run still reports what it committed
        report.enforce_seconds += _after_batch(edge=edge, tenant_ids=pending)
    report.seconds = time.monotonic() - started
    if not report.busy:
        report.bytes_behind = _finish_run(edge=edge, report=report)
    return report


def _after_batch(*, edge: str, tenant_ids: set[int]) -> float:
    """Tell the ledger who got usage in committed batches. Returns the seconds it took."""
    t0 = time.monotonic()
    try:
        ledger.usage_after_batch(tenant_ids=sorted(tenant_ids))
    except Exception as exc:  # the usage is committed; the ledger's reconcile catches up
        log.exception("usage_after_batch failed for edge %s", edge)
        _note_error(edge=edge, message=f"enforcement: {exc!r}")
    return time.monotonic() - t0


def _retired_map(*, since: datetime | None = None, labels: Iterable[str] = ()) -> dict:
    qs = RetiredLabel.objects.all()
    if since is not None:
        qs = qs.filter(retired_at__gte=since)
    if labels:
        qs = qs.filter(label__in=list(labels))
    return {label: at.timestamp() for label, at in qs.values_list("label", "retired_at")}


def _note_error(*, edge: str, message: str) -> None:
    EdgeIngest.objects.filter(edge=edge).update(
        last_error=message[:2000], last_error_at=timezone.now()
    )


def _finish_run(*, edge: str, report: IngestReport) -> int:
    """Health after a run: how far behind, how fast. Returns the bytes still unread."""
    now = timezone.now()
    behind = 0
    for f in LogFile.objects.filter(edge=edge).exclude(state=LogFile.State.DONE):
        behind += max(0, f.size - f.position)
    health = EdgeIngest.objects.get(edge=edge)
    updates: dict = {"last_run_at": now, "bytes_behind": behind}
    if not report.caught_up and health.last_line_at:
        updates["seconds_behind"] = max(0.0, (now - health.last_line_at).total_seconds())
    else:
        updates["seconds_behind"] = 0.0
    if report.lines:
        updates["lines_per_second"] = report.lines_per_second
    EdgeIngest.objects.filter(edge=edge).update(**updates)
    LogFile.objects.filter(
        edge=edge, state=LogFile.State.DONE, finished_at__lt=now - _DONE_KEPT
    ).delete()
    return behind


# --- one batch ---------------------------------------------------------------------------------


def _step(*, edge: str, path: str, retired: dict[str, float], batch_lines: int) -> _Step:
    """One transaction: find the next file to read (handling rotation), read one batch from
    it, commit the usage and the new position together."""
    step = _Step()
    with transaction.atomic():
        locked = EdgeIngest.objects.select_for_update(skip_locked=True).filter(edge=edge).first()
        if locked is None:
            step.busy = True
            return step
        target = _next_file(edge=edge, path=path, step=step)
        if target is None:
            step.caught_up = True
            return step
        row, fh = target
        with fh:
            batch = parser.read_batch(
                fh, start=row.position, max_lines=batch_lines, max_bytes=1 << 62, retired=retired
            )
            size = parser.file_size(fh)
        _commit_batch(edge=edge, row=row, batch=batch, size=size, retired=retired, step=step)
    return step


def _commit_batch(
    *,
    edge: str,
    row: LogFile,
    batch: parser.Batch,
    size: int,
    retired: dict[str, float],
    step: _Step,
) -> None:
    now = timezone.now()
    t0 = time.perf_counter()
    charged, unknown = _resolve(batch=batch, retired=retired)
    hours = {h: datetime.fromtimestamp(h * parser.HOUR, tz=UTC) for _, h in charged}
    deltas = [
        ledger.UsageDelta(tenant_id, edge, hours[hour], acc[0], acc[1], acc[2])
        for (tenant_id, hour), acc in charged.items()
    ]
    t1 = time.perf_counter()
    ledger.usage_apply(deltas=deltas)
    step.apply_seconds += time.perf_counter() - t1
    step.resolve_seconds += t1 - t0
    step.buckets += len(deltas)
    unknown_requests = _unknown_add(edge=edge, unknown=unknown)
    malformed = batch.malformed_total
    if malformed:
        _malformed_add(edge=edge, row=row, batch=batch, now=now)
    moved = LogFile.objects.filter(pk=row.pk, position=row.position).update(
        position=batch.end,
        size=size,
        **({"grew_at": now} if size != row.size else {}),
    )
    if moved != 1:
        raise _PositionMoved
    health: dict = {
        "lines_total": F("lines_total") + batch.lines,
        "bytes_total": F("bytes_total") + (batch.end - batch.start),
        "malformed_total": F("malformed_total") + malformed,
        "unknown_requests_total": F("unknown_requests_total") + unknown_requests,
    }
    if batch.lines or malformed:
        health["last_batch_at"] = now
    if batch.last_ts is not None:
        health["last_line_at"] = datetime.fromtimestamp(batch.last_ts, tz=UTC)
    EdgeIngest.objects.filter(edge=edge).update(**health)
    step.lines += batch.lines
    step.malformed += malformed
    step.unknown += unknown_requests
    step.log_bytes += batch.end - batch.start
    step.tenant_ids |= {tenant_id for (tenant_id, _), acc in charged.items() if acc[0] > 0}
    if batch.end > batch.start:
        step.progressed = True
    step.caught_up = batch.at_eof and row.state == LogFile.State.CURRENT


def _resolve(
    *, batch: parser.Batch, retired: dict[str, float]
) -> tuple[dict[tuple[int, float], list[int]], dict[tuple[str, float, bool], list[int]]]:
    """Split a batch's buckets into the tenants' usage and unknown traffic, by the labels as
    they are committed now. Raises _Redo when a label's retirement falls inside an hour of
    this batch and the batch was parsed without knowing it."""
    labels = {label for label, _ in batch.usage} | {label for label, _ in batch.late}
    current, gone = _labels_lookup(sorted(labels))
    charged: dict[tuple[int, float], list[int]] = defaultdict(lambda: [0, 0, 0])
    unknown: dict[tuple[str, float, bool], list[int]] = defaultdict(lambda: [0, 0, 0])
    redo: dict[str, float] = {}

    def add(target: list[int], acc: list[int]) -> None:
        target[0] += acc[0]
        target[1] += acc[1]
        target[2] += acc[2]

    for (label, hour), acc in batch.usage.items():
        if label in current:
            add(charged[(current[label], hour)], acc)
            continue
        if label not in gone:
            add(unknown[(label, hour, False)], acc)
            continue
        tenant_id, cutoff = gone[label]
        if retired.get(label) == cutoff:
            add(charged[(tenant_id, hour)], acc)  # split by line when parsed: all before
        elif (hour + 1) * parser.HOUR <= cutoff:
            add(charged[(tenant_id, hour)], acc)  # the whole hour is before retirement
        elif hour * parser.HOUR >= cutoff:
            add(unknown[(label, hour, True)], acc)
        else:
            redo[label] = cutoff
    for (label, hour), acc in batch.late.items():
        if label in gone and retired.get(label) == gone[label][1]:
            add(unknown[(label, hour, True)], acc)
        else:  # the retirement we parsed with changed; parse again with the committed one
            redo[label] = gone[label][1] if label in gone else float("inf")
    if redo:
        raise _Redo(redo)
    return charged, unknown


_PLAIN_LABEL = re.compile(r"[a-z0-9-]{0,63}")


def _storable_label(label: str) -> str:
    """Labels come from the Host header as nginx matched it, but the log is not trusted:
    anything unusual is stored escaped (NUL, for one, cannot be stored at all)."""
    if _PLAIN_LABEL.fullmatch(label):
        return label
    return repr(label)[1:-1][:63]


def _labels_lookup(names: list[str]) -> tuple[dict[str, int], dict[str, tuple[int, float]]]:
    """Current labels -> tenant id; retired labels -> (tenant id, retirement epoch)."""
    current: dict[str, int] = {}
    gone: dict[str, tuple[int, float]] = {}
    # Only a plain label can be a tenant's; anything else (upper case, NUL, which PostgreSQL
    # cannot even take as a parameter) is unknown without asking the database.
    names = [n for n in names if n and _PLAIN_LABEL.fullmatch(n)]
    if not names:
        return current, gone
    if connection.vendor == "postgresql":
        # One round trip with an array parameter, however many labels a batch has.
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT label, id FROM {Tenant._meta.db_table} WHERE label = ANY(%s)", [names]
            )
            current.update(cursor.fetchall())
            cursor.execute(
                f"SELECT label, tenant_id, retired_at FROM {RetiredLabel._meta.db_table} "
                "WHERE label = ANY(%s)",
                [names],
            )
            gone.update((label, (t, at.timestamp())) for label, t, at in cursor.fetchall())
        return current, gone
    for i in range(0, len(names), 2000):  # bounded IN lists (SQLite's variable limit)
        part = names[i : i + 2000]
        current.update(Tenant.objects.filter(label__in=part).values_list("label", "pk"))
        for label, tenant_id, at in RetiredLabel.objects.filter(label__in=part).values_list(
            "label", "tenant_id", "retired_at"
        ):
            gone[label] = (tenant_id, at.timestamp())
    return current, gone


def _unknown_add(*, edge: str, unknown: dict[tuple[str, float, bool], list[int]]) -> int:
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
    sql = (
        f"INSERT INTO {table} (edge, label, day, retired, requests, bytes, last_hour) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) "
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
        cursor.executemany(sql, rows)
    return sum(r[4] for r in rows)


def _malformed_add(*, edge: str, row: LogFile, batch: parser.Batch, now: datetime) -> None:
    for kind, count in sorted(batch.malformed.items()):
        updated = MalformedCount.objects.filter(edge=edge, kind=kind).update(
            count=F("count") + count, last_seen_at=now
        )
        if not updated:
            MalformedCount.objects.create(edge=edge, kind=kind, count=count, last_seen_at=now)
    MalformedSample.objects.bulk_create(
        [
            MalformedSample(
                edge=edge,
                seen_at=now,
                path=row.path,
                offset=s.offset,
                kind=s.kind,
                reason=s.reason[:500],
                text=s.text,
            )
            for s in batch.samples
        ]
    )
    keep = list(
        MalformedSample.objects.filter(edge=edge)
        .order_by("-id")
        .values_list("pk", flat=True)[: settings.INGEST_SAMPLES_KEPT]
    )
    MalformedSample.objects.filter(edge=edge).exclude(pk__in=keep).delete()


# --- which file to read next -------------------------------------------------------------------


def _open(path: str, *, edge: str | None = None):
    """The file opened for reading, or None. A file that is there but cannot be read is an
    error staff must see (``edge`` given: noted in its health); a missing one is not."""
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if edge is not None:
            _note_error(edge=edge, message=f"cannot read {path}: {exc.strerror or exc}")
        return None


def _siblings(path: str) -> list[str]:
    """Files next to the log that rotation may have produced: access.log.1, access.log-2026…"""
    p = Path(path)
    try:
        names = os.listdir(p.parent)
    except OSError:
        return []
    prefix = p.name
    found = [
        str(p.parent / n)
        for n in names
        if n != prefix
        and n.startswith(prefix)
        and n[len(prefix) : len(prefix) + 1] in {".", "-", "_"}
        and not n.endswith(_COMPRESSED)
    ]
    return sorted(found)


def _same_file(fh, row: LogFile) -> bool:
    st = os.fstat(fh.fileno())
    if (st.st_dev, st.st_ino) != (row.device, row.inode):
        return False
    return parser.head_matches(fh, parser.Fingerprint(row.fp_length, row.fp_digest))


def _locate(row: LogFile, path: str):
    """Open a rotated file where it was last seen or among the log's siblings."""
    for candidate in [row.path, *_siblings(path)]:
        fh = _open(candidate)
        if fh is None:
            continue
        if _same_file(fh, row):
            return candidate, fh
        fh.close()
    return None, None


def _find_copy(row: LogFile, path: str, known: set[tuple[int, int]]):
    """copytruncate left the old content in a copy: a sibling with the same head."""
    fp = parser.Fingerprint(row.fp_length, row.fp_digest)
    for candidate in _siblings(path):
        fh = _open(candidate)
        if fh is None:
            continue
        st = os.fstat(fh.fileno())
        if (st.st_dev, st.st_ino) not in known and parser.head_matches(fh, fp):
            return candidate, fh
        fh.close()
    return None, None


def _new_current(*, edge: str, path: str, fh, now: datetime) -> LogFile:
    st = os.fstat(fh.fileno())
    fp = parser.fingerprint(fh)
    return LogFile.objects.create(
        edge=edge,
        state=LogFile.State.CURRENT,
        path=path,
        device=st.st_dev,
        inode=st.st_ino,
        fp_length=fp.length,
        fp_digest=fp.digest,
        position=0,
        size=st.st_size,
        grew_at=now,
    )


def _next_file(*, edge: str, path: str, step: _Step):
    """The file to read in this batch, opened, with its cursor row; None when there is
    nothing to read. Rotations found on the way are recorded (caller's transaction)."""
    now = timezone.now()
    idle = timedelta(seconds=settings.INGEST_ROTATED_IDLE_SECONDS)
    # 1. Rotated files first: their rest belongs before the current file's lines.
    for row in LogFile.objects.filter(edge=edge, state=LogFile.State.ROTATED).order_by("pk"):
        where, fh = _locate(row, path)
        if fh is None:
            # Gone (deleted, or compressed without delaycompress) before it was seen idle:
            # whatever nginx wrote to it after our last read is lost, so say so.
            LogFile.objects.filter(pk=row.pk).update(
                state=LogFile.State.DONE, finished_at=now, lost=True
            )
            EdgeIngest.objects.filter(edge=edge).update(files_lost=F("files_lost") + 1)
            _note_error(
                edge=edge,
                message=f"rotated file {row.path} vanished before it was finished "
                f"(read to byte {row.position}; keep rotated logs uncompressed for a while)",
            )
            step.progressed = True
            continue
        size = parser.file_size(fh)
        if where != row.path or size != row.size:
            LogFile.objects.filter(pk=row.pk).update(
                path=where, size=size, **({"grew_at": now} if size != row.size else {})
            )
            row.path, row.grew_at = where, (now if size != row.size else row.grew_at)
            row.size = size
        if size > row.position:
            return row, fh
        fh.close()
        if now - row.grew_at >= idle:
            LogFile.objects.filter(pk=row.pk).update(state=LogFile.State.DONE, finished_at=now)
    # 2. The file at the log path now.
    fh = _open(path, edge=edge)
    if fh is None:
        gone = LogFile.objects.filter(edge=edge, state=LogFile.State.CURRENT).first()
        if gone is not None and not os.path.lexists(path):
            # Renamed and not re-created yet (logrotate's nocreate: nginx makes the new file
            # when it reopens): keep following the renamed file meanwhile.
            LogFile.objects.filter(pk=gone.pk).update(state=LogFile.State.ROTATED, rotated_at=now)
            step.progressed = True
            return _next_file(edge=edge, path=path, step=step)
        return None
    st = os.fstat(fh.fileno())
    row = LogFile.objects.filter(edge=edge, state=LogFile.State.CURRENT).first()
    if row is None:
        row = _new_current(edge=edge, path=path, fh=fh, now=now)
        step.progressed = True
    elif (st.st_dev, st.st_ino) != (row.device, row.inode):
        # Renamed away (nginx -s reopen): finish it from wherever it went, then this one.
        LogFile.objects.filter(pk=row.pk).update(state=LogFile.State.ROTATED, rotated_at=now)
        _new_current(edge=edge, path=path, fh=fh, now=now)
        fh.close()
        step.progressed = True
        return _next_file(edge=edge, path=path, step=step)
    else:
        fp = parser.Fingerprint(row.fp_length, row.fp_digest)
        if st.st_size < row.position or not parser.head_matches(fh, fp):
            # Truncated in place (copytruncate): the old content lives on in a copy, if any.
            known = set(
                LogFile.objects.filter(edge=edge)
                .exclude(state=LogFile.State.DONE)
                .values_list("device", "inode")
            )
            where, copy = _find_copy(row, path, known)
            if copy is not None:
                cst = os.fstat(copy.fileno())
                copy.close()
                LogFile.objects.filter(pk=row.pk).update(
                    state=LogFile.State.ROTATED,
                    rotated_at=now,
                    path=where,
                    device=cst.st_dev,
                    inode=cst.st_ino,
                    size=cst.st_size,
                    grew_at=now,
                )
            else:
                LogFile.objects.filter(pk=row.pk).update(
                    state=LogFile.State.DONE, finished_at=now, lost=True
                )
                EdgeIngest.objects.filter(edge=edge).update(files_lost=F("files_lost") + 1)
                _note_error(
                    edge=edge,
                    message=f"{path} was truncated at {row.position} and no copy was found",
                )
            _new_current(edge=edge, path=path, fh=fh, now=now)
            fh.close()
            step.progressed = True
            return _next_file(edge=edge, path=path, step=step)
        if row.fp_length < parser.FINGERPRINT_BYTES and st.st_size > row.fp_length:
            grown = parser.fingerprint(fh)  # same head so far, now longer: remember more
            row.fp_length, row.fp_digest = grown.length, grown.digest
            LogFile.objects.filter(pk=row.pk).update(fp_length=grown.length, fp_digest=grown.digest)
    if st.st_size > row.position:
        return row, fh
    if st.st_size != row.size:
        LogFile.objects.filter(pk=row.pk).update(size=st.st_size, grew_at=now)
    fh.close()
    return None
