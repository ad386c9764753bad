"""Which file of an edge's access log to read next, and its cursor (LogFile) through rotations.

Invariants:
- A file is known by its device and inode and by a fingerprint of its head (the first
  FINGERPRINT_BYTES, remembered as the file grows to them), never by its name.
- Rotated files are finished before the current file in every run: rename rotation (the old
  inode is found again among the log's siblings, e.g. access.log.1) and copytruncate (the
  copy is found by its head fingerprint; the truncated file starts again from 0).
- A rotated file that is gone before it was finished (deleted, or compressed at once), or a
  truncated one without a copy, is DONE and counted lost, and staff are told.
- Everything here runs in the caller's transaction (the batch): when the batch rolls back,
  the rotations it recorded roll back with it and are found again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from ingest import parser
from ingest.health import health_note_error
from ingest.models import EdgeIngest, LogFile

_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip")
_DONE_KEPT = timedelta(days=7)  # finished cursors stay a while for staff, then go


@dataclass
class NextFile:
    """What file_next found: a cursor and its file opened (the caller closes it), or nothing
    to read (``row`` None). ``changed``: a cursor was created or changed state on the way."""

    row: LogFile | None = None
    fh: BinaryIO | None = None
    changed: bool = False


def file_next(*, edge: str, path: str) -> NextFile:
    """The file to read in this batch, opened, with its cursor row. Rotations found on the way
    are recorded (caller's transaction), and each sends the search round again."""
    now = timezone.now()
    found = NextFile()
    while True:
        # 1. Rotated files first: their rest belongs before the current file's lines.
        for row in LogFile.objects.filter(edge=edge, state=LogFile.State.ROTATED).order_by("pk"):
            fh = _rotated_open(row=row, edge=edge, path=path, now=now, found=found)
            if fh is not None:
                found.row, found.fh = row, fh
                return found
        # 2. The file at the log path now.
        row = LogFile.objects.filter(edge=edge, state=LogFile.State.CURRENT).first()
        fh = _open(path, edge=edge)
        if fh is None:
            if row is None or os.path.lexists(path):
                return found
            # Renamed and not re-created yet (logrotate's nocreate: nginx makes the new file
            # when it reopens): keep following the renamed file meanwhile.
            LogFile.objects.filter(pk=row.pk).update(state=LogFile.State.ROTATED, rotated_at=now)
            found.changed = True
            continue
        if row is None:
            row = _new_current(edge=edge, path=path, fh=fh, now=now)
            found.changed = True
        elif _replaced(row=row, fh=fh, edge=edge, path=path, now=now):
            fh.close()
            found.changed = True
            continue
        size = parser.file_size(fh)
        if size > row.position:
            found.row, found.fh = row, fh
            return found
        if size != row.size:
            LogFile.objects.filter(pk=row.pk).update(size=size, grew_at=now)
        fh.close()
        return found


def file_forget_finished(*, edge: str) -> None:
    """Finished cursors are kept a while for staff, then deleted."""
    LogFile.objects.filter(
        edge=edge, state=LogFile.State.DONE, finished_at__lt=timezone.now() - _DONE_KEPT
    ).delete()


def _rotated_open(*, row: LogFile, edge: str, path: str, now: datetime, found: NextFile):
    """A rotated file opened when it has bytes left to read, else None: DONE once it has
    been idle long enough, lost when it is gone."""
    where, fh = file_locate(row, path)
    if fh is None:
        # Gone (deleted, or compressed without delaycompress) before it was seen idle:
        # whatever nginx wrote to it after our last read is lost, so say so.
        _lost(
            row=row,
            edge=edge,
            now=now,
            message=f"rotated file {row.path} vanished before it was finished "
            f"(read to byte {row.position}; keep rotated logs uncompressed for a while)",
        )
        found.changed = True
        return None
    size = parser.file_size(fh)
    if where != row.path or size != row.size:
        LogFile.objects.filter(pk=row.pk).update(
            path=where, size=size, **({"grew_at": now} if size != row.size else {})
        )
        row.path, row.grew_at = where, (now if size != row.size else row.grew_at)
        row.size = size
    if size > row.position:
        return fh
    fh.close()
    if now - row.grew_at >= timedelta(seconds=settings.INGEST_ROTATED_IDLE_SECONDS):
        LogFile.objects.filter(pk=row.pk).update(state=LogFile.State.DONE, finished_at=now)
    return None


def _replaced(*, row: LogFile, fh, edge: str, path: str, now: datetime) -> bool:
    """Is the file at the log path no longer the current cursor's? Then the cursor is rotated
    (or lost) and a new current one made for this file. Else the head fingerprint grows."""
    st = os.fstat(fh.fileno())
    if (st.st_dev, st.st_ino) != (row.device, row.inode):
        # Renamed away (nginx -s reopen): finish it from wherever it went, then this one.
        LogFile.objects.filter(pk=row.pk).update(state=LogFile.State.ROTATED, rotated_at=now)
        _new_current(edge=edge, path=path, fh=fh, now=now)
        return True
    if st.st_size < row.position or not parser.head_matches(
        fh, parser.Fingerprint(row.fp_length, row.fp_digest)
    ):
        # Truncated in place (copytruncate): the old content lives on in a copy, if any.
        _truncated(row=row, edge=edge, path=path, now=now)
        _new_current(edge=edge, path=path, fh=fh, now=now)
        return True
    if row.fp_length < parser.FINGERPRINT_BYTES and st.st_size > row.fp_length:
        grown = parser.fingerprint(fh)  # same head so far, now longer: remember more
        row.fp_length, row.fp_digest = grown.length, grown.digest
        LogFile.objects.filter(pk=row.pk).update(fp_length=grown.length, fp_digest=grown.digest)
    return False


def _truncated(*, row: LogFile, edge: str, path: str, now: datetime) -> None:
    """The current file was truncated: follow its copy as a rotated file, or call it lost."""
    known = set(
        LogFile.objects.filter(edge=edge)
        .exclude(state=LogFile.State.DONE)
        .values_list("device", "inode")
    )
    where, copy = _find_copy(row, path, known)
    if copy is None:
        _lost(
            row=row,
            edge=edge,
            now=now,
            message=f"{path} was truncated at {row.position} and no copy was found",
        )
        return
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


def _lost(*, row: LogFile, edge: str, now: datetime, message: str) -> None:
    LogFile.objects.filter(pk=row.pk).update(state=LogFile.State.DONE, finished_at=now, lost=True)
    EdgeIngest.objects.filter(edge=edge).update(files_lost=F("files_lost") + 1)
    health_note_error(edge=edge, message=message)


def _open(path: str, *, edge: str | None = None):
    """The file opened for reading, or None. A file that is there but cannot be read is an
    error staff must see (``edge`` given: noted in its health); a missing one is not."""
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if edge is not None:
            health_note_error(edge=edge, message=f"cannot read {path}: {exc.strerror or exc}")
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


def file_locate(row: LogFile, path: str):
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
