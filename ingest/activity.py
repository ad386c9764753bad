"""The status page's pass: what the meter has read of an edge's log, read again for what each
tenant did (accelerator.activity), written with how far it got, in one transaction a step.

Invariants:
- It never reads past the meter (LogFile.position): a line is seen once it is charged. A
  step's activity and its LogFile.activity_position commit together, so a crash or a kill
  anywhere neither loses nor doubles what the page shows.
- It holds the edge's EdgeIngest row (SKIP LOCKED) like the meter's batches: one worker per
  edge reads its log at a time.
- The meter goes first: a run catches the ledger up, then the status page, so a catch-up's
  charges (and its enforcement) never wait for the page's material, which costs more to
  gather per line than the charges do.
- A file gone before this pass read it (deleted or compressed after the meter finished it)
  is skipped: the page misses what it held; the meter never does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F

from accelerator.activity import ActivityDelta, activity_record
from ingest import parser
from ingest.files import file_locate
from ingest.labels import labels_lookup
from ingest.models import EdgeIngest, LogFile
from ingest.parallel import ParsePool, batch_end
from ingest.pause import pause_point

# Lines a step reads at most. A step rewrites the row of every tenant it saw once, whatever
# its lines: big steps cost less per line; what they hold is per tenant, not per line.
STEP_LINES = 2_000_000


@dataclass
class ActivityReport:
    lines: int = 0
    seconds: float = 0.0
    skipped_bytes: int = 0  # of files gone, or cut shorter, before this pass read them


def activity_catch_up(
    *, edge: str, path: str, max_seconds: float, pool: ParsePool
) -> ActivityReport:
    """Read what the meter has read and this pass has not, a step at a time, until caught up
    or ``max_seconds`` have passed (at least one step). ``pool``: the run's parse workers
    (with none, each step is parsed in this process)."""
    report = ActivityReport()
    started = time.monotonic()
    while True:
        with transaction.atomic():
            if not _step(edge=edge, path=path, pool=pool, report=report):
                break
        if time.monotonic() - started >= max_seconds:
            break
    report.seconds = time.monotonic() - started
    return report


def _step(*, edge: str, path: str, pool: ParsePool, report: ActivityReport) -> bool:
    """One step (the caller's transaction). False: nothing left to do, or the edge is busy."""
    locked = EdgeIngest.objects.select_for_update(skip_locked=True).filter(edge=edge).first()
    if locked is None:
        return False
    row = (
        LogFile.objects.filter(edge=edge, activity_position__lt=F("position"))
        .order_by("pk")
        .first()
    )
    if row is None:
        return False
    start = row.activity_position
    _where, fh = file_locate(row, path)
    if fh is None:
        LogFile.objects.filter(pk=row.pk).update(activity_position=row.position)
        report.skipped_bytes += row.position - start
        return True
    with fh:
        end = min(batch_end(fh, start=start, max_lines=STEP_LINES)[0], row.position)
        batch = pool.read_activity(fh, start=start, end=end)
    if batch.end == start or batch.end < end:  # shorter than what the meter read: skip the rest
        report.skipped_bytes += row.position - batch.end
        end = row.position
    activity_add(activity=batch.activity)
    pause_point("activity")
    LogFile.objects.filter(pk=row.pk).update(activity_position=end)
    report.lines += batch.lines
    return True


def activity_add(*, activity: parser.Activity) -> None:
    """Record what each tenant did in a step (caller's transaction). Unknown labels are
    dropped: they are no tenant's, and staff see their traffic as unknown already."""
    seen_by_label = activity.seen()
    if not seen_by_label:
        return
    current, gone = labels_lookup(sorted(seen_by_label))
    deltas = []
    for label, seen in seen_by_label.items():
        if label in current:
            tenant_id, retired = current[label], False
        elif label in gone:
            tenant_id, retired = gone[label][0], True
        else:
            continue
        deltas.append(
            ActivityDelta(
                tenant_id=tenant_id,
                retired=retired,
                first=seen.first,
                last=seen.last,
                agent=seen.agent,
                pulls=seen.pulls,
                refusals=seen.refusals,
            )
        )
    activity_record(deltas=deltas)
