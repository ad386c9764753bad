"""Ingestion: from an edge's access log to the ledger, exactly once. The public entry point:
ingest_edge runs batches (ingest.batch) until the edge is caught up or its time is up.

Invariants:
- A run is safe from any number of workers at once and idempotent: each batch commits its
  usage with its position, and a second worker on the edge finds it busy and leaves.
- A batch refused for a retirement it did not know (labels.Redo: staff's view of retired
  labels, never a charge) is parsed again with it, a few times at most; any other failure is
  rolled back, noted in the edge's health and raised.

Quota rules stay in quota: ingestion only reports usage (usage_apply, in the batch) and,
after committed batches, names the tenants that got some (usage_after_batch, here).
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from ingest.activity import activity_catch_up
from ingest.batch import PositionMoved, ReadAhead, batch_step
from ingest.files import file_forget_finished
from ingest.health import health_after_run, health_note_error
from ingest.labels import LabelCache, Redo, labels_retired
from ingest.models import EdgeIngest
from ingest.parallel import ParsePool
from quota.settlement import usage_after_batch
from quota.tasks import usage_settle

log = logging.getLogger(__name__)

EDGE_NAME_MAX = EdgeIngest._meta.get_field("edge").max_length
_REDO_LIMIT = 3
_RETIRED_PRELOAD = timedelta(days=2)
# While catching up, the ledger hears about the tenants of several batches at once, at least
# this often: enforcement costs per tenant, not per line, and stays within seconds.
_ENFORCE_EVERY = 3.0


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
    read_ahead_used: int = 0  # batches whose parse ran while the previous one committed
    parsed_in_parts: int = 0  # batches parsed by worker processes (ingest.parallel)
    parse_cpu_seconds: float = 0.0  # what those batches (and the status page's) cost them
    caught_up: bool = False  # the last look found nothing but, at most, an unfinished line
    # The meter's part of ``seconds``: from the start to its last commit and enforcement.
    meter_seconds: float = 0.0
    # The status page's pass, after the meter (ingest.activity).
    activity_lines: int = 0
    activity_seconds: float = 0.0
    activity_skipped_bytes: int = 0

    @property
    def lines_per_second(self) -> float:
        """The meter's rate."""
        return self.lines / self.meter_seconds if self.meter_seconds > 0 else 0.0


def ingest_edge(
    *,
    edge: str,
    path: str | os.PathLike,
    max_seconds: float | None = None,
    batch_lines: int | None = None,
    enforce: bool = True,
    read_ahead: bool = True,
    parse_workers: int | None = None,
) -> IngestReport:
    """Ingest an edge's access log from the saved position until it is caught up or
    ``max_seconds`` have passed. Idempotent; safe from any number of workers at once.

    After committed batches, quota.settlement.usage_after_batch learns the tenants that got usage
    (enforcement, threshold emails, invite credit): when the run is caught up or ends, and
    every few seconds while it catches up; not at all when ``enforce`` is False. Then the
    status page's pass (ingest.activity) reads what the meter read, for up to ``max_seconds``
    more.

    ``parse_workers``: processes that parse a big catch-up's batches (ingest.parallel), started
    only when the run is far enough behind and ended with it; default INGEST_PARSE_WORKERS
    (-1: one per core, at most two: PostgreSQL needs its share of the machine); 0 parses in
    this process.
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
    with _collector_frozen():
        return _run(
            edge=edge,
            path=path,
            max_seconds=max_seconds,
            batch_lines=batch_lines,
            enforce=enforce,
            read_ahead=read_ahead,
            parse_workers=parse_workers,
        )


_frozen_lock = threading.Lock()
_frozen_runs = 0
_frozen_here = False  # the runs froze (a process that froze its objects itself keeps them so)


@contextmanager
def _collector_frozen() -> Iterator[None]:
    """Leave the objects that exist before a run (Django's, the modules') out of the cyclic
    garbage collector's passes while it runs (gc.freeze): a batch's aggregates are hundreds
    of thousands of objects, and each full pass also walked the whole process (7 % of a
    catch-up at 250,000-line batches). Runs in several threads freeze once, the last thaws."""
    global _frozen_runs, _frozen_here
    with _frozen_lock:
        if not _frozen_runs and not gc.get_freeze_count():
            gc.freeze()
            _frozen_here = True
        _frozen_runs += 1
    try:
        yield
    finally:
        with _frozen_lock:
            _frozen_runs -= 1
            if not _frozen_runs and _frozen_here:
                gc.unfreeze()
                _frozen_here = False


def _run(
    *,
    edge: str,
    path: str,
    max_seconds: float,
    batch_lines: int,
    enforce: bool,
    read_ahead: bool,
    parse_workers: int | None,
) -> IngestReport:
    report = IngestReport(edge=edge)
    started = time.monotonic()
    EdgeIngest.objects.get_or_create(edge=edge, defaults={"path": path})
    if parse_workers is None:
        parse_workers = settings.INGEST_PARSE_WORKERS
    if parse_workers < 0:
        cores = os.cpu_count() or 1
        parse_workers = min(2, cores) if cores > 1 else 0
    pool = ParsePool(parse_workers)
    try:
        _meter(
            edge=edge,
            path=path,
            max_seconds=max_seconds,
            batch_lines=batch_lines,
            enforce=enforce,
            read_ahead=read_ahead,
            pool=pool,
            report=report,
        )
        report.meter_seconds = time.monotonic() - started
        if not report.busy:
            _activity_pass(edge=edge, path=path, max_seconds=max_seconds, pool=pool, report=report)
    finally:
        pool.close()
    report.parsed_in_parts = pool.batches
    report.parse_cpu_seconds = pool.cpu_seconds
    report.seconds = time.monotonic() - started
    if not report.busy:
        report.bytes_behind = health_after_run(
            edge=edge,
            lines=report.lines,
            lines_per_second=report.lines_per_second,
            caught_up=report.caught_up,
        )
        file_forget_finished(edge=edge)
    return report


def _meter(
    *,
    edge: str,
    path: str,
    max_seconds: float,
    batch_lines: int,
    enforce: bool,
    read_ahead: bool,
    pool: ParsePool,
    report: IngestReport,
) -> None:
    """The meter's batches until caught up or ``max_seconds`` have passed, and the ledger told
    of their tenants."""
    started = time.monotonic()
    retired = labels_retired(since=timezone.now() - _RETIRED_PRELOAD)
    redos = 0
    pending: set[int] = set()
    enforced = time.monotonic()
    # One thread parses the next batch while the current one commits (ingest.batch.ReadAhead):
    # the parser and PostgreSQL then work at the same time.
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-read")
    ahead: ReadAhead | None = None
    labels = LabelCache()
    try:
        while True:
            try:
                step = batch_step(
                    edge=edge,
                    path=path,
                    retired=retired,
                    batch_lines=batch_lines,
                    ahead=ahead,
                    pool=pool,
                    labels=labels,
                    # No parse ahead that the run would not use (or when asked: the bench's
                    # baseline).
                    reader=reader
                    if read_ahead and time.monotonic() - started < max_seconds
                    else None,
                )
            except Redo as redo:
                redos += 1
                if redos > _REDO_LIMIT:
                    raise
                retired.update(redo.labels)
                continue
            except PositionMoved:
                report.busy = True
                break
            except Exception as exc:  # rolled back: nothing counted; staff see why
                health_note_error(edge=edge, message=f"batch failed: {exc!r}")
                if enforce and pending:
                    _after_batch(edge=edge, tenant_ids=pending)
                raise
            ahead = step.ahead
            redos = 0  # the limit is per batch: a long run may meet many old retirements
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
            report.read_ahead_used += step.read_ahead_used
            pending |= step.tenant_ids
            report.caught_up = step.caught_up
            last = not step.progressed or time.monotonic() - started >= max_seconds
            if enforce and pending and (last or time.monotonic() - enforced >= _ENFORCE_EVERY):
                report.enforce_seconds += _after_batch(edge=edge, tenant_ids=pending)
                pending = set()
                enforced = time.monotonic()
            if last:
                break
    finally:
        # A parse still running is waited for (it closes its file), one never started dropped.
        reader.shutdown(wait=True, cancel_futures=True)
    if enforce and pending:  # a busy or moved run still reports what it committed
        report.enforce_seconds += _after_batch(edge=edge, tenant_ids=pending)


def _activity_pass(
    *, edge: str, path: str, max_seconds: float, pool: ParsePool, report: IngestReport
) -> None:
    """The status page's pass after the meter's. It is not the meter: a failure is noted and
    the next run reads on from its committed position, never a charged byte lost."""
    try:
        done = activity_catch_up(edge=edge, path=path, max_seconds=max_seconds, pool=pool)
    except Exception as exc:
        log.exception("tenant activity not written for edge %s", edge)
        health_note_error(edge=edge, message=f"activity: {exc!r}")
        return
    report.activity_lines = done.lines
    report.activity_seconds = done.seconds
    report.activity_skipped_bytes = done.skipped_bytes


def _after_batch(*, edge: str, tenant_ids: set[int]) -> float:
    """Tell the ledger who got usage in committed batches. Returns the seconds it took."""
    t0 = time.monotonic()
    try:
        if settings.ACCELERATOR_ROLE == "edge":
            # The edge's database role writes usage only; the control plane settles it.
            usage_settle.delay(sorted(tenant_ids))
        else:
            usage_after_batch(tenant_ids=sorted(tenant_ids))
    except Exception as exc:  # the usage is committed; the ledger's reconcile catches up
        log.exception("usage_after_batch failed for edge %s", edge)
        health_note_error(edge=edge, message=f"enforcement: {exc!r}")
    return time.monotonic() - t0
