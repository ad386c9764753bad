"""The edge's slice fills: one upstream read per slice for every client, and a digest check.

The blob cache fills in slices (nginx's slice module, one cache entry per digest and slice);
every slice nginx does not have comes here. The first request for a slice starts its fill from
the fetch server; the fill is spooled to an unlinked file as it arrives, and every request for
that slice meanwhile (and for GRACE_SECONDS after, while nginx moves the slice into its cache)
joins it and streams what has arrived so far: a client joining a cold blob gets its first byte
at once, not after the slice, and the upstream is read once. nginx's own cache lock (a waiter
polls every 0.5 s) is off; only the request that started a fill caches it (joiners are answered
with ``X-Edge-Joined``, which nginx does not cache and does not pass on). A fill goes on when its
requests go away: the one that caches it is nginx's, which completes a cacheable answer anyway.

The digest check. Slices usually come in order, so the SHA-256 of the blob is computed along
the fills. Every fill holds back its final chunk until its hash state is handed on, and the
last slice's until the whole blob is checked: on a match the chunk goes out and nginx caches
the slice; on a mismatch every request of the fill is cut, so nginx caches nothing of that
slice (a cut answer is never cached) and every client reading the blob gets a cut download,
never a complete wrong one; every slice already cached is evicted (its file removed: nginx
treats a missing file as a miss) and the digest answers 502 for BAD_SECONDS, so clients retrying
do not make the edge read the bad blob again and again.

A client's Range that may end before the blob does (not ``bytes=N-``) comes as RANGE_PATH +
the blob's path: every slice is filled through nginx's /@fill first (the last one checking the
blob), then the range is read from the cache. Ranges are thus never answered from a blob that
was not checked whole; only ranges that reach the blob's end stream from a fill.

``GET /@stats`` answers the process's counters (COUNTERS) as JSON; the edge's gate sync reads
them for the operators' metrics (edge.state).

When the slices before the last one did not pass here in order (a resumed download of a cold
blob fills from the middle), their bytes are read from the cache files, and any slice not there
is read from the fetch server without being cached.

A data-plane process: no Django, no database. Run with
    python -m edge.blob_verify --listen 127.0.0.1:8484 --fetch 127.0.0.1:8481 \\
        --cache-dir /var/cache/edge-blobs --slice-size 8m
or `manage.py edge_verify`, which takes them from settings. It must run as nginx's worker user:
it reads and removes cache files, and spools fills in the cache directory (unlinked files).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

from edge.render import EdgeConfigError, is_loopback, slice_bytes

logger = logging.getLogger("edge_verify")

BLOB_RE = re.compile(
    r"^/v2/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"/blobs/sha256:([a-f0-9]{64})$"
)
CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
RANGE_START_RE = re.compile(r"^bytes=(\d{1,18})-")
# A client's single range: bytes=N-M, bytes=N- or bytes=-K (a suffix).
CLIENT_RANGE_RE = re.compile(r"^bytes=(\d{0,18})-(\d{0,18})$")
# Ranges that may end before the blob does come here (nginx's /@edge-blob-range) as
# RANGE_PATH + the blob's path: they are answered only from a blob checked whole.
RANGE_PATH = "/@range"
CHUNK = 256 * 1024
# Hash states of fills in progress (a few hundred bytes each) and digests recently found bad.
MAX_STATES = 4096
MAX_BAD = 4096
BAD_SECONDS = 10.0
MAX_AHEAD = 256  # read-ahead fills in flight at once
AHEAD_DELAY = 0.05
TIMEOUT = 300.0
# How long a finished fill still answers joiners once the request that started it has it all:
# nginx moves the slice into its cache a moment after its last byte, and a request in between
# would otherwise read the upstream again.
GRACE_SECONDS = 1.0
# A request that joined a fill whose answer could not be shared (an error; a tenant's own
# 599) asks again itself, at most this many times.
JOIN_ATTEMPTS = 3
JOINED_HEADER = "X-Edge-Joined"
RESUME_ATTEMPTS = 3  # a slice cut mid-way is read on from where it stopped, this many times
# Fills in flight (and in their grace) are kept in memory up to this much (--memory; the systemd
# unit allows 512M): about (upstream rate) x (a slice's fill + GRACE_SECONDS). Beyond it, in
# unlinked files in the cache directory (a byte written there costs about twice the CPU).
MEMORY_BUDGET = 256 * 1024 * 1024
# Headers of the fetch server's answer that are the connection's, not the blob's.
HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})
# What /@stats counts since the process started (the edge's gate sync reads it for the
# operators' metrics): slice fills started and joined, fills read on after a cut, fills cut,
# blobs whose digest did not match, fills spooled to files past the memory budget.
STATS_PATH = "/@stats"
COUNTERS = ("fills", "joins", "resumes", "cut", "digest_mismatches", "spooled")


def cache_key(hex_digest: str, start: int, slice_size: int) -> str:
    """The slice's cache key as nginx builds it: $blob_digest$slice_range."""
    return f"sha256:{hex_digest}bytes={start}-{start + slice_size - 1}"


def cache_path(cache_dir: Path, key: str) -> Path:
    """The file nginx keeps a key in, for `levels=2:2`."""
    name = hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()
    return cache_dir / name[-2:] / name[-4:-2] / name


def cached_body(path: Path, expected: int) -> bytes | None:
    """The body of a cache file, if it is there and has the expected length.

    nginx's file: a binary header, "\\nKEY: <key>\\n", the upstream's HTTP header, the body.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return None
    key_at = data.find(b"\nKEY: ")
    end = data.find(b"\r\n\r\n", key_at) if key_at >= 0 else -1
    if end < 0:
        return None
    body = data[end + 4 :]
    return body if len(body) == expected else None


@dataclass
class _Prefix:
    """The hash of a blob's bytes [0, pos)."""

    pos: int
    hasher: hashlib._Hash


class Fill:
    """One slice's answer from the fetch server, for every request that asks for it while it
    arrives. Its body is kept in memory (or, past the verifier's memory budget, in an unlinked
    spool file); readers send what is ``visible``."""

    def __init__(self, key: tuple[str, str], spool_dir: Path, budget: ChunkPool) -> None:
        self.key = key
        self.cond = threading.Condition()
        self._spool_dir = spool_dir
        self._budget = budget
        # Set once the fetch server's headers are in (``shared`` is then True or False).
        self.shared: bool | None = None
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.size = 0
        # The body so far: chunks in memory (with the offset each starts at; their buffers go
        # back to the pool), or a spool file.
        self.chunks: list[memoryview] | None = None
        self.offsets: list[int] = []
        self._buffers: list[bytearray] = []
        self.spool: IO[bytes] | None = None
        # An answer that is not shared, unread, with its connection (the starter closes it).
        self.response: http.client.HTTPResponse | None = None
        self.connection: http.client.HTTPConnection | None = None
        self.received = 0
        self.visible = 0
        self.done = False
        self.failed = False
        self.finished_at = 0.0
        self._readers = 0
        self._closed = False
        self._ends = 0  # of the fetch and of the starter's answer: both over, the grace starts

    def answer(self, status: int, headers: list[tuple[str, str]], size: int) -> None:
        if self._budget.take(size):
            self.chunks = []
        else:  # closed by retire(), once no reader uses it
            self.spool = tempfile.TemporaryFile(dir=self._spool_dir)  # noqa: SIM115
        with self.cond:
            self.status, self.headers, self.size, self.shared = status, headers, size, True
            self.cond.notify_all()

    def unshared(
        self,
        response: http.client.HTTPResponse | None = None,
        connection: http.client.HTTPConnection | None = None,
    ) -> None:
        """The answer is not a slice (or never came): only the request that started the fill
        gets it, the others ask again."""
        with self.cond:
            self.response, self.connection = response, connection
            self.shared, self.failed = False, response is None
            self.finished_at = time.monotonic()
            self.cond.notify_all()

    def take(self, resp: http.client.HTTPResponse) -> memoryview | bytes:
        """Read what has come of the body (at most CHUNK bytes) into the fill and return it.
        Readers may send it, unless it ends the slice: that part waits for finish()."""
        want = min(CHUNK, self.size - self.received)
        got: memoryview | bytes
        if self.chunks is not None:
            buffer = self._budget.buffer()
            self._buffers.append(buffer)
            got = memoryview(buffer)[: resp.readinto(memoryview(buffer)[:want])]
        else:
            assert self.spool is not None
            got = resp.read(want)
            os.pwrite(self.spool.fileno(), got, self.received)
        if not got:
            raise OSError(f"fetch answer cut at {self.received} of {self.size} bytes")
        with self.cond:
            if self.chunks is not None:
                assert isinstance(got, memoryview)
                self.chunks.append(got)
                self.offsets.append(self.received)
            self.received += len(got)
            if self.received < self.size:
                self.visible = self.received
            self.cond.notify_all()
        return got

    def send(self, connection: socket.socket, start: int, end: int) -> None:
        """Bytes [start, end) of the body to ``connection``."""
        if self.chunks is not None:
            with self.cond:  # the lists grow while readers send
                first = bisect.bisect_right(self.offsets, start) - 1
                parts = list(zip(self.offsets[first:], self.chunks[first:], strict=True))
            for offset, chunk in parts:
                if offset >= end:
                    break
                connection.sendall(chunk[start - offset : end - offset])
                start = offset + len(chunk)
            return
        assert self.spool is not None
        while start < end:
            written = os.sendfile(connection.fileno(), self.spool.fileno(), start, end - start)
            if written == 0:
                raise OSError("spool ended early")
            start += written

    def finish(self, ok: bool) -> None:
        with self.cond:
            if ok:
                self.visible = self.received
                self.done = True
            else:
                self.failed = True
            self.finished_at = time.monotonic()
            self.cond.notify_all()

    def wait_headers(self) -> bool:
        with self.cond:
            self.cond.wait_for(lambda: self.shared is not None, timeout=TIMEOUT)
            return bool(self.shared)

    def wait_bytes(self, sent: int) -> int:
        """The number of bytes readers may send, once it is more than ``sent``; -1 when the
        fill failed (the reader must cut its answer)."""
        with self.cond:
            self.cond.wait_for(lambda: self.visible > sent or self.failed, timeout=TIMEOUT)
            if self.visible > sent:
                return self.visible
            return -1

    def joinable(self, now: float) -> bool:
        with self.cond:
            if self.failed or self.shared is False:
                return False
            return not self.done or self._ends < 2 or now - self.finished_at < GRACE_SECONDS

    def ended(self) -> bool:
        """One of the fetch and the starter's answer is over; True once both are (the grace
        starts then)."""
        with self.cond:
            self._ends += 1
            if self._ends == 2:
                self.finished_at = time.monotonic()
            return self._ends == 2

    def reader(self, on: bool) -> None:
        with self.cond:
            self._readers += 1 if on else -1
            self._free_when_unused()

    def retire(self) -> None:
        with self.cond:
            self._closed = True
            self._free_when_unused()

    def _free_when_unused(self) -> None:
        if not self._closed or self._readers:
            return
        if self.chunks is not None:
            self.chunks = None
            self._budget.give(self.size, self._buffers)
            self._buffers = []
        if self.spool is not None and not self.spool.closed:
            self.spool.close()


class ChunkPool:
    """The bytes fills may keep in memory at once (the rest spool to files), in CHUNK buffers
    that are used again: fresh memory for every chunk costs the kernel more than the copy.
    Thread-safe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.refused = 0  # fills that did not fit (spooled to files)
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        """Reserve room for a fill of n bytes."""
        with self._lock:
            if self.used + n > self.limit:
                self.refused += 1
                return False
            self.used += n
            return True

    def buffer(self) -> bytearray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return bytearray(CHUNK)

    def give(self, n: int, buffers: list[bytearray]) -> None:
        with self._lock:
            self.used -= n
            # Kept for the next fills, up to a quarter of the budget (an idle edge gives the
            # rest back).
            room = self.limit // 4 // CHUNK - len(self._free)
            self._free.extend(buffers[: max(room, 0)])


class Verifier:
    """Fills in flight, hash states per digest and the record of bad digests. Thread-safe."""

    def __init__(
        self, fetch: str, cache_dir: Path, slice_size: int, memory: int = MEMORY_BUDGET
    ) -> None:
        self.fetch = fetch
        self.cache_dir = cache_dir
        self.slice_size = slice_size
        self._states: OrderedDict[str, _Prefix] = OrderedDict()
        self._bad: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._ahead: set[tuple[str, int]] = set()
        self._fills: dict[tuple[str, str], Fill] = {}  # (digest, Range) -> its fill
        self.memory = ChunkPool(memory)
        self.started = time.time()
        self._counts = dict.fromkeys(COUNTERS[:-1], 0)  # "spooled" is the memory pool's

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def stats(self) -> dict:
        """The counters since this process started (``started``, epoch seconds: a new value
        means they began again at 0), the fill memory in use and the fills in flight."""
        with self._lock:
            counts = {**self._counts, "spooled": self.memory.refused}
            in_flight = len(self._fills)
        return {
            "started": self.started,
            "counts": counts,
            "memory_bytes": self.memory.used,
            "fills_in_flight": in_flight,
        }

    def fill_for(self, hex_digest: str, range_header: str) -> tuple[Fill, bool]:
        """The fill of this slice that a request joins, or a new one it starts (True)."""
        key = (hex_digest, range_header)
        now = time.monotonic()
        with self._lock:
            fill = self._fills.get(key)
            if fill is not None and fill.joinable(now):
                fill.reader(True)
                self._counts["joins"] += 1
                return fill, False
            if fill is not None:
                fill.retire()
            fill = Fill(key, self.cache_dir, self.memory)
            fill.reader(True)
            self._fills[key] = fill
            self._counts["fills"] += 1
            return fill, True

    def fill_over(self, fill: Fill) -> None:
        """Called when the fetch is over and when the starter's answer is: once both are,
        forget the fill after its grace (at once when it failed or was not shared)."""
        if not fill.ended():
            return
        delay = GRACE_SECONDS if fill.done else 0.0

        def forget() -> None:
            with self._lock:
                if self._fills.get(fill.key) is fill:
                    del self._fills[fill.key]
            fill.retire()

        if delay:
            timer = threading.Timer(delay, forget)
            timer.daemon = True
            timer.start()
        else:
            forget()

    def filling(self, hex_digest: str, start: int) -> bool:
        """Whether a fill of the slice at ``start`` is under way (or just over)."""
        key = (hex_digest, f"bytes={start}-{start + self.slice_size - 1}")
        with self._lock:
            fill = self._fills.get(key)
        return fill is not None and fill.joinable(time.monotonic())

    def read_ahead(self, path: str, hex_digest: str, start: int, headers: dict) -> None:
        """Have nginx fill the slice at `start` now (through the fetch server's /@fill, into
        the cache), without waiting for a client to ask. Returns at once."""
        with self._lock:
            if (hex_digest, start) in self._ahead or len(self._ahead) >= MAX_AHEAD:
                return
            self._ahead.add((hex_digest, start))
        threading.Thread(
            target=self._fill, args=(path, hex_digest, start, headers), daemon=True
        ).start()

    def _fill(self, path: str, hex_digest: str, start: int, headers: dict) -> None:
        # A client reading the blob asks for the next slice at once: let it start that fill
        # itself (the others join it). Only when nobody asks does the read-ahead fill it,
        # keeping the link busy for clients slower than it.
        time.sleep(AHEAD_DELAY)
        if self.filling(hex_digest, start):
            with self._lock:
                self._ahead.discard((hex_digest, start))
            return
        try:
            # nginx completes a cacheable fill whoever reads it: the headers are enough.
            conn, _resp = self.ask_slice(path, start, headers)
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            _log("read_ahead_failed", digest=hex_digest, start=start, error=str(exc))
        finally:
            with self._lock:
                self._ahead.discard((hex_digest, start))

    def claim(self, hex_digest: str, start: int) -> _Prefix | None:
        """The hash of the bytes before `start`, if the fill so far came in order; the caller
        owns it until it gives it back with `release`."""
        with self._lock:
            if start == 0:
                self._states.pop(hex_digest, None)
                return _Prefix(0, hashlib.sha256())
            state = self._states.get(hex_digest)
            if state is None or state.pos != start:
                return None
            return self._states.pop(hex_digest)

    def continues(self, hex_digest: str, start: int) -> bool:
        """Whether a fill at `start` continues one under way (its previous slice just in)."""
        with self._lock:
            state = self._states.get(hex_digest)
            return start > 0 and state is not None and state.pos == start

    def release(self, hex_digest: str, state: _Prefix) -> None:
        with self._lock:
            self._states[hex_digest] = state
            self._states.move_to_end(hex_digest)
            while len(self._states) > MAX_STATES:
                self._states.popitem(last=False)

    def is_bad(self, hex_digest: str) -> bool:
        with self._lock:
            until = self._bad.get(hex_digest)
            if until is None:
                return False
            if until < time.monotonic():
                del self._bad[hex_digest]
                return False
            return True

    def reject(self, hex_digest: str, total: int) -> int:
        """Remember a bad digest and evict every slice of it; returns the files removed."""
        with self._lock:
            self._states.pop(hex_digest, None)
            self._bad[hex_digest] = time.monotonic() + BAD_SECONDS
            while len(self._bad) > MAX_BAD:
                self._bad.popitem(last=False)
        removed = 0
        keys = [f"sha256:{hex_digest}"] + [
            cache_key(hex_digest, start, self.slice_size)
            for start in range(0, max(total, 1), self.slice_size)
        ]
        for key in keys:
            try:
                cache_path(self.cache_dir, key).unlink()
                removed += 1
            except FileNotFoundError:
                pass
        return removed

    def run_fill(self, fill: Fill, path: str, hex_digest: str, forward: dict) -> None:
        """Read one slice from the fetch server into ``fill`` (in a thread of its own: it goes
        on whoever still reads it), checking the blob's digest along the way."""
        conn = None
        handed_over = False
        ok = False
        try:
            conn, resp = self._ask(path, forward)
            found = _slice_of(resp)
            if found is None:
                # Errors, and bodies of unknown length (nginx caches neither): as they are, to
                # the request that asked; it closes the connection.
                fill.unshared(resp, conn)
                handed_over = True
                return
            start, end, total = found
            headers = [(n, v) for n, v in resp.getheaders() if n.lower() not in HOP_HEADERS]
            fill.answer(resp.status, headers, end - start + 1)
            ok = self._stream(fill, resp, hex_digest, start, end, total, path, forward)
        except (OSError, http.client.HTTPException) as exc:
            # Headers may be out already: cutting the answers is the only safe thing to do.
            _log("fill_failed", digest=hex_digest, range=fill.key[1], error=str(exc))
        finally:
            if not handed_over:
                if conn is not None:
                    conn.close()
                if fill.shared is None:
                    fill.unshared()
                else:
                    fill.finish(ok)
                    if not ok:
                        self.count("cut")
            self.fill_over(fill)

    def _stream(
        self,
        fill: Fill,
        resp: http.client.HTTPResponse,
        hex_digest: str,
        start: int,
        end: int,
        total: int,
        path: str,
        forward: dict,
    ) -> bool:
        """The slice's body into the fill, all but its final chunk visible; hands the hash state
        on (or checks the whole blob) before that chunk goes out. False: cut."""
        size = end - start + 1
        last = end == total - 1
        state = self.claim(hex_digest, start)
        if state is None and last:
            state = self.prefix_from_cache(path, hex_digest, start, forward)
        resumed: list[http.client.HTTPConnection] = []
        try:
            while fill.received < size:
                try:
                    chunk = fill.take(resp)
                except (OSError, http.client.HTTPException) as exc:
                    # Cut mid-slice (the upstream, or a parent that went away): go on from the
                    # byte it stopped at. nginx does not end a client's answer when one of its
                    # slices comes short: it would go on with the next slice, bytes missing.
                    if len(resumed) >= RESUME_ATTEMPTS:
                        raise
                    _log(
                        "fill_resumed", digest=hex_digest, at=start + fill.received, error=str(exc)
                    )
                    self.count("resumes")
                    resp = self._rest(path, forward, start + fill.received, end, total, resumed)
                    continue
                if state is not None:
                    state.hasher.update(chunk)
        finally:
            for conn in resumed:
                conn.close()
        if state is not None:
            state.pos = end + 1
        if not last:
            if state is not None:
                self.release(hex_digest, state)
            if start % self.slice_size == 0:
                self.read_ahead(
                    path,
                    hex_digest,
                    end + 1,
                    {k: v for k, v in forward.items() if k in ("Host", "X-Edge-Secret")},
                )
            return True
        assert state is not None
        if state.hasher.hexdigest() != hex_digest:
            removed = self.reject(hex_digest, total)
            _log("digest_mismatch", digest=hex_digest, size=total, evicted_files=removed)
            self.count("digest_mismatches")
            return False
        return True

    def _rest(
        self,
        path: str,
        forward: dict,
        first: int,
        last: int,
        total: int,
        conns: list[http.client.HTTPConnection],
    ) -> http.client.HTTPResponse:
        """The fetch server's answer for bytes [first, last] of the blob (not a miss again)."""
        headers = {k: v for k, v in forward.items() if k != "X-Edge-Tenant"}
        conn, resp = self._ask(path, {**headers, "Range": f"bytes={first}-{last}"})
        conns.append(conn)
        if _slice_of(resp) != (first, last, total):
            raise OSError(f"resuming at {first}: status {resp.status}, not that range")
        return resp

    def _ask(
        self, path: str, headers: dict
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """A GET to the fetch server and its answer's head; the caller closes the connection."""
        conn = http.client.HTTPConnection(*host_port(self.fetch), timeout=TIMEOUT)
        try:
            conn.request("GET", path, headers=headers)
            return conn, conn.getresponse()
        except BaseException:
            conn.close()
            raise

    def ask_slice(
        self, path: str, start: int, headers: dict
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """The slice at ``start`` asked of nginx's /@fill (the fetch listener's location that
        answers from the cache and fills a miss through this process); the caller closes."""
        end = start + self.slice_size - 1
        return self._ask("/@fill" + path, {**headers, "Range": f"bytes={start}-{end}"})

    def slice_file(self, hex_digest: str, start: int) -> Path:
        """Where nginx keeps the slice at ``start`` of the blob."""
        return cache_path(self.cache_dir, cache_key(hex_digest, start, self.slice_size))

    def whole_checked(self, path: str, hex_digest: str, headers: dict) -> int:
        """Have every slice of the blob in the cache, its digest checked: the blob's size.

        A blob whose last slice is cached was checked whole when it was filled (the last slice
        is cached only once the whole blob matches). Otherwise every slice is asked of /@fill
        in order, as the read-ahead does: the last one's fill checks the blob. Raises
        RangeRefused."""
        total = cached_total(self.slice_file(hex_digest, 0))
        last = None if total is None else (total - 1) // self.slice_size * self.slice_size
        if last is not None and self.slice_file(hex_digest, last).exists():
            return total
        start, total = 0, None
        while total is None or start < total:
            try:
                conn, resp = self.ask_slice(path, start, headers)
            except (OSError, http.client.HTTPException):
                raise RangeRefused(502) from None
            try:
                found = _slice_of(resp)
                if found is None or found[0] != start:
                    raise RangeRefused(599 if resp.status == 599 else 502)
                received = 0
                while chunk := resp.read(CHUNK):
                    received += len(chunk)
            except (OSError, http.client.HTTPException):
                raise RangeRefused(502) from None
            finally:
                conn.close()
            _first, last_byte, total = found
            if received != last_byte - start + 1 or self.is_bad(hex_digest):
                raise RangeRefused(502)  # cut: the digest did not match, or the fill failed
            start = last_byte + 1
        return total

    def prefix_from_cache(self, path: str, hex_digest: str, start: int, headers: dict) -> _Prefix:
        """Hash bytes [0, start) from the cached slices, fetching (uncached) any missing one."""
        hasher = hashlib.sha256()
        for offset in range(0, start, self.slice_size):
            length = min(self.slice_size, start - offset)
            body = cached_body(self.slice_file(hex_digest, offset), length)
            if body is None:
                body = self.fetch_range(path, offset, offset + length - 1, headers)
            hasher.update(body)
        return _Prefix(start, hasher)

    def fetch_range(self, path: str, first: int, last: int, headers: dict) -> bytes:
        conn, resp = self._ask(path, {**headers, "Range": f"bytes={first}-{last}"})
        try:
            body = resp.read()
        finally:
            conn.close()
        if resp.status == 200 and first == 0 and len(body) > last:
            return body[: last + 1]
        if resp.status != 206 or len(body) != last - first + 1:
            raise OSError(f"range {first}-{last}: status {resp.status}, {len(body)} bytes")
        return body


class RangeRefused(Exception):
    """A gated range cannot be answered: ``status`` says why (502: the blob is bad or could
    not be read whole; 599: the tenant's rate of misses)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def cached_total(first_slice: Path) -> int | None:
    """The blob's size from its first slice's cache file (its Content-Range), if cached."""
    try:
        with first_slice.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    found = re.search(rb"\r\nContent-Range: bytes 0-\d+/(\d{1,18})\r\n", head, re.IGNORECASE)
    if found is None:
        return None
    return int(found.group(1))


def client_range(header: str, total: int) -> tuple[int, int] | None:
    """[first, last] of a client's single range in a blob of ``total`` bytes; None when the
    header is not one range (the whole blob is answered, as HTTP allows). Raises ValueError
    when the range is outside the blob (416)."""
    found = CLIENT_RANGE_RE.match(header)
    if found is None or found.group(1) == found.group(2) == "":
        return None
    first, last = found.groups()
    if first == "":  # the last K bytes
        if int(last) == 0:
            raise ValueError("an empty suffix")
        return max(total - int(last), 0), total - 1
    start = int(first)
    end = total - 1 if last == "" else min(int(last), total - 1)
    if start >= total or start > end:
        raise ValueError("outside the blob")
    return start, end


def _slice_of(resp: http.client.HTTPResponse) -> tuple[int, int, int] | None:
    """(first byte, last byte, blob size) of an answer that is a whole slice (or a whole blob),
    or None for anything else: an error, or a body of unknown or inconsistent length."""
    length = resp.getheader("Content-Length")
    if resp.status not in (200, 206) or length is None or not length.isdigit():
        return None
    size = int(length)
    if resp.status == 206:
        found = CONTENT_RANGE_RE.match(resp.getheader("Content-Range", ""))
        if found is None:
            return None
        start, end, total = (int(x) for x in found.groups())
    else:
        start, end, total = 0, size - 1, size
    if end - start + 1 != size or size == 0:
        return None
    return start, end, total


def memory_bytes(text: str) -> int:
    """A size such as 128m, 512k or 0 (every fill spooled to a file)."""
    found = re.fullmatch(r"(\d{1,9})([kmg]?)", text.strip().lower())
    if found is None:
        raise argparse.ArgumentTypeError(f"not a size such as 128m: {text!r}")
    return int(found.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[found.group(2)]


def host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def _log(event: str, **fields) -> None:
    logger.warning(json.dumps({"event": event, **fields}, sort_keys=True))


def make_handler(verifier: Verifier):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(405, b"")

        def do_GET(self) -> None:  # noqa: N802
            if self.path == STATS_PATH:
                return self._answer(200, json.dumps(verifier.stats()).encode())
            if self.path.startswith(RANGE_PATH + "/"):
                return self._range(self.path[len(RANGE_PATH) :])
            # The blob path before the query; the query (ns=, the registry nginx routed to) goes
            # on to the fetch server with it.
            match = BLOB_RE.match(self.path.partition("?")[0])
            if match is None:
                return self._answer(404, b"")
            hex_digest = match.group(1)
            forward = {
                name: self.headers[name]
                # X-Edge-Secret: a fetch server that requires the edge's secret gets it from
                # nginx through here; this process keeps none of its own.
                for name in ("Host", "Range", "X-Request-Id", "X-Edge-Tenant", "X-Edge-Secret")
                if self.headers.get(name)
            }
            for _ in range(JOIN_ATTEMPTS):
                if verifier.is_bad(hex_digest):
                    return self._answer(502, b"")
                fill, started = verifier.fill_for(hex_digest, forward.get("Range", ""))
                try:
                    if started:
                        self._start(fill, hex_digest, forward)
                    if fill.wait_headers():
                        return self._send(fill, joined=not started)
                    if started:
                        return self._unshared(fill)
                finally:
                    fill.reader(False)
                    if started:
                        verifier.fill_over(fill)
            return self._answer(502, b"")

        def _range(self, path: str) -> None:
            """A client's range that may end before the blob does (X-Edge-Range): answered
            from the cache once the whole blob is there and checked, never from bytes that
            were not (the first byte waits for the whole fill of a cold blob)."""
            match = BLOB_RE.match(path.partition("?")[0])
            if match is None:
                return self._answer(404, b"")
            hex_digest = match.group(1)
            if verifier.is_bad(hex_digest):
                return self._answer(502, b"")
            forward = {
                name: self.headers[name]
                for name in ("Host", "X-Request-Id", "X-Edge-Tenant", "X-Edge-Secret")
                if self.headers.get(name)
            }
            try:
                total = verifier.whole_checked(path, hex_digest, forward)
            except RangeRefused as refused:
                return self._answer(refused.status, b"")
            try:
                wanted = client_range(self.headers.get("X-Edge-Range", ""), total)
            except ValueError:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{total}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            first, last = wanted or (0, total - 1)
            self.send_response(206 if wanted else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Docker-Content-Digest", f"sha256:{hex_digest}")
            if wanted:
                self.send_header("Content-Range", f"bytes {first}-{last}/{total}")
            self.send_header("Content-Length", str(last - first + 1))
            self.end_headers()
            forward.pop("X-Edge-Tenant", None)  # the blob is in the cache: no miss of theirs
            try:
                for start in range(first // verifier.slice_size * verifier.slice_size, last + 1,
                                   verifier.slice_size):  # fmt: skip
                    self._slice_part(path, start, first, last, forward)
            except (OSError, http.client.HTTPException):
                # Evicted and refilled badly, or nginx went away: cut, never completed.
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
            return None

        def _slice_part(self, path: str, start: int, first: int, last: int, forward: dict) -> None:
            """The bytes [first, last] has in the slice at ``start``, from nginx's cache."""
            end = start + verifier.slice_size - 1
            conn, resp = verifier.ask_slice(path, start, forward)
            try:
                if _slice_of(resp) is None:
                    raise OSError(f"slice at {start}: status {resp.status}")
                at = start
                while at <= last and (chunk := resp.read(CHUNK)):
                    lo, hi = max(first - at, 0), min(last + 1 - at, len(chunk))
                    if lo < hi:
                        self.wfile.write(chunk[lo:hi])
                    at += len(chunk)
                if at <= min(last, end):
                    raise OSError(f"slice at {start} ended at {at}")
            finally:
                conn.close()

        def _start(self, fill: Fill, hex_digest: str, forward: dict) -> None:
            asked = RANGE_START_RE.match(forward.get("Range", ""))
            forward = dict(forward)
            if verifier.continues(hex_digest, int(asked.group(1)) if asked else 0):
                # A tenant's rate of misses counts blobs, not slices: the slices after the
                # first of a fill in order are not its misses again.
                forward.pop("X-Edge-Tenant", None)
            threading.Thread(
                target=verifier.run_fill,
                args=(fill, self.path, hex_digest, forward),
                daemon=True,
                name="fill",
            ).start()

        def _send(self, fill: Fill, joined: bool) -> None:
            """The fill's answer as it arrives; cut (never completed) when the fill fails."""
            self.send_response(fill.status)
            for name, value in fill.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(fill.size))
            if joined:
                self.send_header(JOINED_HEADER, "1")  # nginx caches only the starter's copy
            self.end_headers()
            sent = 0
            try:
                while sent < fill.size:
                    visible = fill.wait_bytes(sent)
                    if visible < 0:
                        raise OSError("fill failed")
                    fill.send(self.connection, sent, visible)
                    sent = visible
            except OSError:
                # The fill failed (cut: nginx caches nothing), or nginx went away (the fill
                # goes on for the others).
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

        def _unshared(self, fill: Fill) -> None:
            resp = fill.response
            if resp is None:  # the fetch server did not answer: nginx answers 502
                self.close_connection = True
                return
            try:
                self._pass_through(resp)
            finally:
                if fill.connection is not None:
                    fill.connection.close()

        def _pass_through(self, resp: http.client.HTTPResponse) -> None:
            self.send_response(resp.status)
            for name, value in resp.getheaders():
                if name.lower() not in HOP_HEADERS:
                    self.send_header(name, value)
            length = resp.getheader("Content-Length")
            if length is None:
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                self.send_header("Content-Length", length)
            self.end_headers()
            while chunk := resp.read(CHUNK):
                self.wfile.write(chunk)

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args) -> None:
            logger.debug(fmt, *args)

    return Handler


def make_server(
    listen: str, fetch: str, cache_dir: Path, slice_size: int, memory: int = MEMORY_BUDGET
) -> ThreadingHTTPServer:
    verifier = Verifier(fetch, cache_dir, slice_size, memory)
    server = ThreadingHTTPServer(host_port(listen), make_handler(verifier))
    server.daemon_threads = True
    server.verifier = verifier  # type: ignore[attr-defined]
    return server


def serve(
    listen: str, fetch: str, cache_dir: Path, slice_size: int, memory: int = MEMORY_BUDGET
) -> None:
    server = make_server(listen, fetch, cache_dir, slice_size, memory)
    logger.info("edge digest check on %s, fills from %s, slices of %d", listen, fetch, slice_size)
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--fetch", required=True)
    parser.add_argument("--cache-dir", required=True, type=Path)
    parser.add_argument("--slice-size", default="8m", type=slice_bytes)
    parser.add_argument(
        "--memory", default=MEMORY_BUDGET, type=memory_bytes, help="fills kept in memory, e.g. 128m"
    )
    args = parser.parse_args(argv)
    if not is_loopback(args.listen) or not is_loopback(args.fetch):
        # Like edge_render: a blob server on another address would be any local user's, or
        # anyone's, way around the gate's metering.
        raise EdgeConfigError("--listen and --fetch must be loopback addresses (127.0.0.1:port)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    serve(args.listen, args.fetch, args.cache_dir, args.slice_size, args.memory)


if __name__ == "__main__":
    main()
