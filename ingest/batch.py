"""One batch of an edge's log: read, resolved and committed together with its position.

Invariants:
- A batch is one transaction that holds the edge's EdgeIngest row lock, reads complete lines
  from a LogFile's position, writes their usage through quota.usage.usage_apply_hourly, the
  unknown traffic, the malformed lines' counts and samples and the edge's totals, and moves
  the position (compare-and-set). A crash or a kill anywhere rolls the whole batch back; the next
  run reads the same bytes again from the committed position.
- Two workers on one edge: the second finds the row locked and leaves (SKIP LOCKED), so they
  never read the same file at once. The compare-and-set on the position keeps that true on
  databases without row locks (SQLite in development).
- Parsing in parts (ingest.parallel): a big batch is cut at newlines and parsed by worker
  processes, joined in file order into exactly what one read_batch gives; a worker that dies
  fails the batch before anything is written.
- Reading ahead (the pipeline): while a batch commits, the next one is parsed in a thread from
  the position the committing batch will leave (ReadAhead). Parsing only reads the file; the
  next transaction uses that parse only when its locked cursor is the same file at exactly
  that position and the parse had the same retirements, else it reads again itself. So what
  a batch commits is always what a parse from its committed position gives, and exactly-once
  does not depend on the pipeline. Whatever a batch aggregates (parser.Batch) rides along.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from ingest import parser
from ingest.files import file_next
from ingest.labels import LabelCache, labels_resolve, unknown_traffic_add
from ingest.models import EdgeIngest, EdgeTraffic, LogFile, MalformedCount, MalformedSample
from ingest.parallel import ParsePool
from ingest.pause import pause_point
from quota.usage import usage_apply_hourly


class PositionMoved(Exception):
    """Another writer moved the position under us (only possible without row locks)."""


@dataclass
class Step:
    """What one batch did (all of it committed)."""

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
    ahead: ReadAhead | None = None  # the next batch, being parsed while this one committed
    read_ahead_used: bool = False


@dataclass(frozen=True)
class ReadAhead:
    """The next batch of a file, parsed (in ``future``) outside any transaction from ``start``:
    usable only by a batch whose locked cursor is this file at that very position."""

    row_id: int
    device: int
    inode: int
    start: int
    retired: dict[str, float]
    batch_lines: int
    future: Future[tuple[parser.Batch, int]]

    def matches(self, *, row: LogFile, fh: BinaryIO, retired: dict, batch_lines: int) -> bool:
        st = os.fstat(fh.fileno())
        return (
            self.row_id == row.pk
            and self.start == row.position
            and (self.device, self.inode) == (st.st_dev, st.st_ino)
            and self.retired == retired
            and self.batch_lines == batch_lines
        )

    def result(self) -> tuple[parser.Batch, int] | None:
        """The parsed batch and the file size it saw, or None when the parse failed (the
        batch then reads inline and meets the same error there, in its transaction)."""
        try:
            return self.future.result()
        except Exception:
            return None


def _read(
    fh: BinaryIO,
    *,
    start: int,
    batch_lines: int,
    retired: dict[str, float],
    pool: ParsePool | None = None,
    more: bool = False,
) -> tuple[parser.Batch, int]:
    """``more``: the run will read the next batch too (the pool starts on it at once)."""
    if pool is not None and pool.wanted(start=start, size=parser.file_size(fh)):
        batch = pool.read(fh, start=start, max_lines=batch_lines, retired=retired, speculate=more)
    else:
        batch = parser.read_batch(
            fh, start=start, max_lines=batch_lines, max_bytes=1 << 62, retired=retired
        )
    return batch, parser.file_size(fh)


def _read_and_close(fh: BinaryIO, **kwargs) -> tuple[parser.Batch, int]:
    with fh:
        return _read(fh, **kwargs)


def batch_step(
    *,
    edge: str,
    path: str,
    retired: dict[str, float],
    batch_lines: int,
    ahead: ReadAhead | None = None,
    reader: Executor | None = None,
    pool: ParsePool | None = None,
    labels: LabelCache | None = None,
) -> Step:
    """One transaction: find the next file to read (handling rotation), read one batch from
    it, commit the usage and the new position together. Raises labels.Redo (rolled back) when
    the batch must be parsed again, PositionMoved when another writer got there first.

    ``ahead``: the previous step's parse of this batch, used when it matches the cursor.
    ``reader``: where to parse the next batch while this one commits (Step.ahead); None
    parses nothing ahead (the run is about to end). ``pool``: worker processes that parse
    big batches in parts (ingest.parallel), inline or ahead. ``labels``: the run's tenants
    found so far (labels.LabelCache)."""
    step = Step()
    with transaction.atomic():
        locked = EdgeIngest.objects.select_for_update(skip_locked=True).filter(edge=edge).first()
        if locked is None:
            step.busy = True
            return step
        found = file_next(edge=edge, path=path)
        step.progressed = found.changed
        if found.row is None:
            step.caught_up = True
            return step
        fh = found.fh
        assert fh is not None
        try:
            got = None
            if ahead is not None and ahead.matches(
                row=found.row, fh=fh, retired=retired, batch_lines=batch_lines
            ):
                got = ahead.result()
            step.read_ahead_used = got is not None
            batch, size = got or _read(
                fh,
                start=found.row.position,
                batch_lines=batch_lines,
                retired=retired,
                pool=pool,
                more=reader is not None,
            )
            if reader is not None and not batch.at_eof and batch.end > batch.start:
                st = os.fstat(fh.fileno())
                snapshot = dict(retired)
                step.ahead = ReadAhead(
                    row_id=found.row.pk,
                    device=st.st_dev,
                    inode=st.st_ino,
                    start=batch.end,
                    retired=snapshot,
                    batch_lines=batch_lines,
                    future=reader.submit(
                        _read_and_close,
                        fh,
                        start=batch.end,
                        batch_lines=batch_lines,
                        retired=snapshot,
                        pool=pool,
                        more=True,
                    ),
                )
                fh = None  # the reader closes it
        finally:
            if fh is not None:
                fh.close()
        pause_point("read")
        _commit(
            edge=edge,
            row=found.row,
            batch=batch,
            size=size,
            retired=retired,
            step=step,
            labels=labels,
        )
        pause_point("commit")
    pause_point("committed")
    return step


def _commit(
    *,
    edge: str,
    row: LogFile,
    batch: parser.Batch,
    size: int,
    retired: dict[str, float],
    step: Step,
    labels: LabelCache | None = None,
) -> None:
    now = timezone.now()
    t0 = time.perf_counter()
    charged, unknown = labels_resolve(batch=batch, retired=retired, cache=labels)
    t1 = time.perf_counter()
    usage_apply_hourly(edge=edge, buckets=charged)
    step.apply_seconds += time.perf_counter() - t1
    step.resolve_seconds += t1 - t0
    step.buckets += len(charged)
    unknown_requests = unknown_traffic_add(edge=edge, unknown=unknown)
    malformed = batch.malformed_total
    if malformed:
        _malformed_add(edge=edge, row=row, batch=batch, now=now)
    _traffic_add(edge=edge, batch=batch)
    moved = LogFile.objects.filter(pk=row.pk, position=row.position).update(
        position=batch.end,
        size=size,
        **({"grew_at": now} if size != row.size else {}),
    )
    if moved != 1:
        raise PositionMoved
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
    step.tenant_ids |= {key[0] for key, acc in charged.items() if acc[0] > 0}
    if batch.end > batch.start:
        step.progressed = True
    step.caught_up = batch.at_eof and row.state == LogFile.State.CURRENT


def _traffic_add(*, edge: str, batch: parser.Batch) -> None:
    """Add the batch's requests and bytes per (status, cache status): a handful of rows, in
    one statement on PostgreSQL (each round trip of a batch is one more wait on the server)."""
    rows = sorted(batch.traffic.items())
    if not rows:
        return
    if connection.vendor == "postgresql":
        table = EdgeTraffic._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (edge, status, cache, requests, bytes_sent) "
                "SELECT %s, s, c, r, b FROM unnest(%s::int[], %s::text[], %s::bigint[], "
                "%s::bigint[]) AS u(s, c, r, b) ON CONFLICT (edge, status, cache) DO UPDATE SET "
                f"requests = {table}.requests + EXCLUDED.requests, "
                f"bytes_sent = {table}.bytes_sent + EXCLUDED.bytes_sent",
                [
                    edge,
                    [status for (status, _c), _acc in rows],
                    [cache for (_s, cache), _acc in rows],
                    [requests for _key, (requests, _b) in rows],
                    [sent for _key, (_r, sent) in rows],
                ],
            )
        return
    for (status, cache), (requests, sent) in rows:
        updated = EdgeTraffic.objects.filter(edge=edge, status=status, cache=cache).update(
            requests=F("requests") + requests, bytes_sent=F("bytes_sent") + sent
        )
        if not updated:
            EdgeTraffic.objects.create(
                edge=edge, status=status, cache=cache, requests=requests, bytes_sent=sent
            )


def _malformed_add(*, edge: str, row: LogFile, batch: parser.Batch, now: datetime) -> None:
    """Count the batch's malformed lines per kind; keep the edge's last samples only."""
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
