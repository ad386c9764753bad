"""A batch parsed by worker processes, in parts: parsing then uses every core while the
previous batch commits. No Django here: the workers import this module and never touch the
database (they are started by 'forkserver' or 'spawn', never forked from a process that holds
connections).

Invariants:
- The batch is what parser.read_batch from ``start`` gives, exactly: its end is found first
  (the max_lines-th newline after ``start``, or the last newline before the end of file),
  [start, end) is cut at newlines into one part per worker, each part is parsed by
  read_batch with ``stop``, and the parts are joined in file order (parser.Batch.extend).
- A worker opens the very file the caller holds (its /proc descriptor, else its name, and
  checks device and inode): a file that cannot be found so, or ends before a part's stop
  (truncated meanwhile), is parsed in the calling process instead. A worker that dies fails
  the batch (BrokenProcessPool): nothing of it is committed.
- While the run goes on, the batch after the one being read is found and handed to the
  workers at once (ParsePool.read's ``speculate``); a later read uses those parts only when
  it reads the same file from exactly their start with the same size and retirements, so it
  is again what a parse from there gives.
- One pool per ingestion run, started at its first batch big enough to need it and ended
  with the run.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from ingest import parser

# Below this many bytes behind, a run parses in its own process: starting workers costs more
# than they save on a small catch-up.
POOL_START_BYTES = 32 << 20
# A batch smaller than this is parsed in the calling process (pool or not).
PART_MIN_BYTES = 1 << 20
_SCAN_BYTES = 1 << 22
WORKER_NICE = 5


def _forget_forkserver() -> None:
    """In a process forked from one that started the forkserver (a Celery prefork worker, a
    test): that server is not this process's child and cannot serve it; start its own."""
    server = multiprocessing.forkserver._forkserver  # type: ignore[attr-defined]
    if server._forkserver_alive_fd is not None:
        os.close(server._forkserver_alive_fd)  # (the parent's server ends with the parent)
    server._forkserver_address = None
    server._forkserver_alive_fd = None
    server._forkserver_pid = None


if "forkserver" in multiprocessing.get_all_start_methods():
    import multiprocessing.forkserver

    os.register_at_fork(after_in_child=_forget_forkserver)


class PartUnreadable(Exception):
    """A worker could not read its part of the very file the caller holds."""


def batch_end(
    f: BinaryIO, *, start: int, max_lines: int, big: Callable[[], None] | None = None
) -> tuple[int, bool]:
    """(end, at end of file) of the batch read_batch would read from ``start``: just after
    its max_lines-th newline, or after the last newline when the file has fewer lines.
    ``big`` is called once the batch is known to be at least PART_MIN_BYTES."""
    f.seek(start)
    buf = bytearray(_SCAN_BYTES)
    pos = start  # file offset of buf[0]
    end = start
    need = max_lines
    while True:
        n = f.readinto(buf)  # type: ignore[attr-defined]
        if not n:
            return end, True
        count = buf.count(b"\n", 0, n)
        if count >= need:
            i = -1
            for _ in range(need):
                i = buf.find(b"\n", i + 1, n)
            return pos + i + 1, False
        if count:
            end = pos + buf.rfind(b"\n", 0, n) + 1
            need -= count
        pos += n
        if big is not None and end - start >= PART_MIN_BYTES:
            big()
            big = None


def split(f: BinaryIO, *, start: int, end: int, parts: int) -> list[tuple[int, int]]:
    """[start, end) cut into about ``parts`` equal ranges, each ending just after a newline
    (``end`` must be just after one)."""
    bounds = [start]
    for k in range(1, parts):
        at = max(start + (end - start) * k // parts, bounds[-1] + 1)
        if at >= end:
            break
        f.seek(at - 1)
        cut = -1
        read = at - 1
        while cut < 0 and read < end:
            block = f.read(min(1 << 16, end - read))
            if not block:
                break
            nl = block.find(b"\n")
            if nl >= 0:
                cut = read + nl + 1
            read += len(block)
        if cut < 0 or cut >= end:
            break
        bounds.append(cut)
    bounds.append(end)
    return list(zip(bounds, bounds[1:], strict=False))


def _worker_init(run_pid: int) -> None:
    # A worker's aggregates hold no reference cycles: the collector would only rescan them.
    gc.disable()
    # Parsing ahead fills the cores the run's commits (this run's process and its PostgreSQL
    # backend) leave free, and never delays them (nor the edge's nginx): measured 3-9 % more
    # lines per second on 2 cores.
    os.nice(WORKER_NICE)
    # The ingestion run ends the pool; a ^C meant for it must not kill parts half-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Workers share their task pipe, so none sees it close when the run's process is killed:
    # each ends itself when that process is gone.
    threading.Thread(target=_exit_with, args=(run_pid,), daemon=True).start()


def _exit_with(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux 5.3+: look every second
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass
            time.sleep(1)
    select.select([fd], [], [])  # readable once the process has exited
    os._exit(1)


def _parse_part(
    sources: tuple[str, ...],
    ident: tuple[int, int],
    start: int,
    stop: int,
    retired: Mapping[str, float],
    die: bool = False,
    activity: bool = False,
) -> tuple[parser.Batch, float]:
    """In a worker: parse [start, stop) of the file known by ``ident`` (device, inode), for
    the meter or (``activity``) for the status page. Returns the batch and the CPU seconds it
    took."""
    if die:  # test only (ParsePool.test_die)
        os.kill(os.getpid(), signal.SIGKILL)
    cpu = time.process_time()
    for source in sources:
        try:
            f = open(source, "rb")  # noqa: SIM115 (closed below)
        except OSError:
            continue
        with f:
            st = os.fstat(f.fileno())
            if (st.st_dev, st.st_ino) != ident:
                continue
            batch = parser.read_batch(
                f,
                start=start,
                max_lines=1 << 62,
                max_bytes=1 << 62,
                retired=retired,
                stop=stop,
                activity=activity,
            )
        if batch.end != stop:
            raise PartUnreadable(f"the file ends at {batch.end}, before {stop}")
        return batch, time.process_time() - cpu
    raise PartUnreadable("the file is not found by its descriptor or its name")


@contextmanager
def _children_allowed() -> Iterator[None]:
    """Let this process start workers (they start on submit) in a Celery prefork worker too.
    There the process is daemonic, and multiprocessing refuses a daemonic process children
    because nothing would end them with it: ours end themselves with it (_exit_with). And its
    authentication key is billiard's type, which multiprocessing cannot hand to a child: the
    same bytes in multiprocessing's own type."""
    config = multiprocessing.current_process()._config  # type: ignore[attr-defined]
    authkey = config["authkey"]
    config["authkey"] = multiprocessing.process.AuthenticationString(bytes(authkey))
    daemon = config.pop("daemon", None)
    try:
        yield
    finally:
        config["authkey"] = authkey
        if daemon is not None:
            config["daemon"] = daemon


def _sources(f: BinaryIO) -> tuple[str, ...]:
    """Where a worker opens the caller's file: its descriptor (Linux; the file may have been
    renamed or deleted meanwhile), else its name."""
    return (f"/proc/{os.getpid()}/fd/{f.fileno()}", str(getattr(f, "name", "")))


@dataclass(frozen=True)
class _Next:
    """The batch after the one just read, already handed to the workers: used only by a read
    of the same file (device, inode) from exactly ``start`` with the same size and
    retirements, as ingest.batch.ReadAhead is."""

    ident: tuple[int, int]
    start: int
    max_lines: int
    retired: dict[str, float]
    end: int
    futures: list[Future[tuple[parser.Batch, float]]]

    def matches(
        self, ident: tuple[int, int], start: int, max_lines: int, retired: Mapping[str, float]
    ) -> bool:
        return (self.ident, self.start, self.max_lines, self.retired) == (
            ident,
            start,
            max_lines,
            retired,
        )


class ParsePool:
    """Worker processes for one ingestion run (``close`` ends them). Not started until a run
    is at least POOL_START_BYTES behind."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()  # the run's thread and its read-ahead thread share it
        # Test only (tests/ingest/test_parallel.py), never set in production: each part's
        # worker kills itself, as a worker dying of anything would.
        self.test_die = os.environ.get("INGEST_TEST_PARSE_DIE") == "1"
        self.batches = 0  # batches parsed in parts
        self.cpu_seconds = 0.0  # what their parts cost the workers
        self._next: _Next | None = None

    @property
    def started(self) -> bool:
        return self._pool is not None

    def wanted(self, *, start: int, size: int) -> bool:
        """Parse the batch at ``start`` of a file of ``size`` bytes with workers?"""
        return self.workers > 0 and (self.started or size - start >= POOL_START_BYTES)

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            return self._pool or self._start()

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            if "forkserver" in multiprocessing.get_all_start_methods():
                ctx = multiprocessing.get_context("forkserver")
                # Workers fork from a server that has the parser imported already.
                ctx.set_forkserver_preload([__name__])
            else:
                ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=ctx,
                initializer=_worker_init,
                initargs=(os.getpid(),),
            )
        return self._pool

    def read(
        self,
        f: BinaryIO,
        *,
        start: int,
        max_lines: int,
        retired: Mapping[str, float],
        speculate: bool = False,
    ) -> parser.Batch:
        """What parser.read_batch(f, start=start, max_lines=max_lines, retired=retired) gives,
        parsed by the workers.

        ``speculate``: the run goes on, so the batch after this one is found and handed to
        the workers now (_Next), behind this one's parts: they never wait while this process
        scans the file and joins the parts, and the next read finds its parts under way."""
        st = os.fstat(f.fileno())
        ident = (st.st_dev, st.st_ino)
        with self._lock:
            ahead, self._next = self._next, None
        if ahead is not None and ahead.matches(ident, start, max_lines, retired):
            end, at_eof, futures = ahead.end, False, ahead.futures
        else:
            end, at_eof = batch_end(
                f, start=start, max_lines=max_lines, big=None if self.started else self._warm
            )
            futures = self._submit(f, ident, start, end, retired)
        if futures and speculate and not at_eof:
            after, after_eof = batch_end(f, start=end, max_lines=max_lines)
            # A next batch at the end of the file is scanned again when it is read: the
            # file may have grown by then.
            parts = None if after_eof else self._submit(f, ident, end, after, retired)
            if parts:
                with self._lock:
                    self._next = _Next(ident, end, max_lines, dict(retired), after, parts)
        batch = self._joined(futures)
        if batch is not None:
            batch.at_eof = at_eof
            self.batches += 1
            return batch
        return parser.read_batch(
            f, start=start, max_lines=max_lines, max_bytes=1 << 62, retired=retired
        )

    def read_activity(self, f: BinaryIO, *, start: int, end: int) -> parser.Batch:
        """What parser.read_batch(f, start=start, stop=end, activity=True) gives (the status
        page's pass over lines the meter has read), parsed by the workers when it is big
        enough. ``end`` must be just after a newline."""
        futures = []
        if self.wanted(start=start, size=end):
            st = os.fstat(f.fileno())
            futures = self._submit(f, (st.st_dev, st.st_ino), start, end, {}, activity=True)
        batch = self._joined(futures)
        if batch is not None:
            return batch
        return parser.read_batch(
            f, start=start, max_lines=1 << 62, max_bytes=1 << 62, stop=end, activity=True
        )

    def _joined(self, futures: list[Future[tuple[parser.Batch, float]]]) -> parser.Batch | None:
        """The parts' batches joined in file order (what one pass gives), and their CPU
        counted; None when there are none, or a worker could not read its part."""
        try:
            results = [fut.result() for fut in futures]
        except PartUnreadable:
            return None
        if not results:
            return None
        self.cpu_seconds += sum(cpu for _batch, cpu in results)
        batch = results[0][0]
        for later, _cpu in results[1:]:
            batch.extend(later)
        return batch

    def _warm(self) -> None:
        """Start the workers (while this process scans on)."""
        pool = self._executor()
        with _children_allowed():
            for _ in range(self.workers):
                pool.submit(os.getpid)

    def _submit(
        self,
        f: BinaryIO,
        ident: tuple[int, int],
        start: int,
        end: int,
        retired: Mapping[str, float],
        activity: bool = False,
    ) -> list[Future[tuple[parser.Batch, float]]]:
        """[start, end) handed to the workers in parts; none when it is too small to cut."""
        if end - start < PART_MIN_BYTES:
            return []
        parts = split(f, start=start, end=end, parts=self.workers)
        if len(parts) < 2:
            return []
        pool = self._executor()
        sources = _sources(f)
        with _children_allowed():
            return [
                pool.submit(
                    _parse_part, sources, ident, a, b, dict(retired), self.test_die, activity
                )
                for a, b in parts
            ]

    def close(self) -> None:
        """End the workers (a part still being parsed is waited for, one not started yet
        dropped)."""
        with self._lock:
            pool, self._pool, self._next = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
