"""The edge's digest check: a blob whose bytes do not match its digest is never served whole.

The blob cache fills in slices (nginx's slice module, one cache entry per digest and slice);
each slice's fill passes through here on its way from the fetch server. Slices usually come in
order, so the SHA-256 of the blob is computed along the fill. The last slice is relayed all
but its final chunk until the whole blob is checked: on a match the chunk goes out and nginx
caches the slice; on a mismatch the connection is cut, so nginx caches nothing of that slice
(a cut answer is never cached) and every client reading the blob gets a cut download, never a
complete wrong one; every slice already cached is evicted (its file removed: nginx treats a
missing file as a miss) and the digest answers 502 for BAD_SECONDS, so clients retrying do not
make the edge read the bad blob again and again.

When the slices before the last one did not pass here in order (a resumed download of a cold
blob fills from the middle), their bytes are read from the cache files, and any slice not there
is read from the fetch server without being cached.

A data-plane process: no Django, no database. Run with
    python -m edge.blob_verify --listen 127.0.0.1:8484 --fetch 127.0.0.1:8481 \\
        --cache-dir /var/cache/edge-blobs --slice-size 8m
or `manage.py edge_verify`, which takes them from settings. It must run as nginx's worker user:
it reads and removes cache files.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from edge.render import EdgeConfigError, is_loopback, slice_bytes

logger = logging.getLogger("edge_verify")

BLOB_RE = re.compile(
    r"^/v2/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"/blobs/sha256:([a-f0-9]{64})$"
)
CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
RANGE_START_RE = re.compile(r"^bytes=(\d{1,18})-")
CHUNK = 256 * 1024
# Hash states of fills in progress (a few hundred bytes each) and digests recently found bad.
MAX_STATES = 4096
MAX_BAD = 4096
BAD_SECONDS = 10.0
MAX_AHEAD = 256  # read-ahead fills in flight at once
AHEAD_DELAY = 0.05
TIMEOUT = 300.0
# Headers of the fetch server's answer that are the connection's, not the blob's.
HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


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


class Verifier:
    """Hash states per digest and the record of bad digests. Thread-safe."""

    def __init__(self, fetch: str, cache_dir: Path, slice_size: int) -> None:
        self.fetch = fetch
        self.cache_dir = cache_dir
        self.slice_size = slice_size
        self._states: OrderedDict[str, _Prefix] = OrderedDict()
        self._bad: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self.checked = 0  # blobs checked whole, for tests and logs
        self.rejected = 0
        self._ahead: set[tuple[str, int]] = set()
        self._relaying: set[tuple[str, int]] = set()  # fills passing here now

    def relaying(self, hex_digest: str, start: int, on: bool) -> None:
        with self._lock:
            if on:
                self._relaying.add((hex_digest, start))
            else:
                self._relaying.discard((hex_digest, start))

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
        # A client reading the blob asks for the next slice at once: let it fill it itself
        # (a client waiting on nginx's cache lock polls every 0.5 s). Only when nobody asks
        # does the read-ahead fill it, keeping the link busy for clients slower than it.
        time.sleep(AHEAD_DELAY)
        with self._lock:
            taken = (hex_digest, start) in self._relaying
        if taken:
            with self._lock:
                self._ahead.discard((hex_digest, start))
            return
        last = start + self.slice_size - 1
        conn = http.client.HTTPConnection(*_host_port(self.fetch), timeout=TIMEOUT)
        try:
            conn.request(
                "GET", "/@fill" + path, headers={**headers, "Range": f"bytes={start}-{last}"}
            )
            # nginx completes a cacheable fill whoever reads it: the headers are enough.
            conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            _log("read_ahead_failed", digest=hex_digest, start=start, error=str(exc))
        finally:
            conn.close()
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
            self.rejected += 1
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

    def prefix_from_cache(self, path: str, hex_digest: str, start: int, headers: dict) -> _Prefix:
        """Hash bytes [0, start) from the cached slices, fetching (uncached) any missing one."""
        hasher = hashlib.sha256()
        for offset in range(0, start, self.slice_size):
            length = min(self.slice_size, start - offset)
            body = cached_body(
                cache_path(self.cache_dir, cache_key(hex_digest, offset, self.slice_size)), length
            )
            if body is None:
                body = self.fetch_range(path, offset, offset + length - 1, headers)
            hasher.update(body)
        return _Prefix(start, hasher)

    def fetch_range(self, path: str, first: int, last: int, headers: dict) -> bytes:
        conn = http.client.HTTPConnection(*_host_port(self.fetch), timeout=TIMEOUT)
        try:
            conn.request("GET", path, headers={**headers, "Range": f"bytes={first}-{last}"})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status == 200 and first == 0 and len(body) > last:
            return body[: last + 1]
        if resp.status != 206 or len(body) != last - first + 1:
            raise OSError(f"range {first}-{last}: status {resp.status}, {len(body)} bytes")
        return body


def _host_port(listen: str) -> tuple[str, int]:
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
            # The blob path before the query; the query (ns=, the registry nginx routed to) goes
            # on to the fetch server with it.
            match = BLOB_RE.match(self.path.partition("?")[0])
            if match is None:
                return self._answer(404, b"")
            hex_digest = match.group(1)
            if verifier.is_bad(hex_digest):
                return self._answer(502, b"")
            forward = {
                name: self.headers[name]
                # X-Edge-Secret: a fetch server that requires the edge's secret gets it from
                # nginx through here; this process keeps none of its own.
                for name in ("Host", "Range", "X-Request-Id", "X-Edge-Tenant", "X-Edge-Secret")
                if self.headers.get(name)
            }
            asked = RANGE_START_RE.match(forward.get("Range", ""))
            fill = (hex_digest, int(asked.group(1)) if asked else 0)
            verifier.relaying(*fill, True)  # from now on, no read-ahead of this slice
            if verifier.continues(*fill):
                # A tenant's rate of misses counts blobs, not slices: the slices after the
                # first of a fill in order are not its misses again.
                forward.pop("X-Edge-Tenant", None)
            conn = http.client.HTTPConnection(*_host_port(verifier.fetch), timeout=TIMEOUT)
            try:
                conn.request("GET", self.path, headers=forward)
                resp = conn.getresponse()
                self._relay(resp, hex_digest, forward)
            except (OSError, http.client.HTTPException) as exc:
                # Headers may be out already: cutting the connection is the only safe answer.
                _log("relay_failed", digest=hex_digest, error=str(exc))
                self.close_connection = True
            finally:
                conn.close()
                verifier.relaying(*fill, False)

        def _relay(self, resp: http.client.HTTPResponse, hex_digest: str, forward: dict) -> None:
            length = resp.getheader("Content-Length")
            if resp.status not in (200, 206) or length is None:
                # Errors, and bodies of unknown length (nginx caches neither): as they are.
                return self._pass_through(resp)
            size = int(length)
            if resp.status == 206:
                found = CONTENT_RANGE_RE.match(resp.getheader("Content-Range", ""))
                if found is None:
                    return self._pass_through(resp)
                start, end, total = (int(x) for x in found.groups())
            else:
                start, end, total = 0, size - 1, size
            if end - start + 1 != size:
                return self._pass_through(resp)
            last = end == total - 1
            state = verifier.claim(hex_digest, start)
            if state is None and last:
                state = verifier.prefix_from_cache(self.path, hex_digest, start, forward)
            self.send_response(resp.status)
            for name, value in resp.getheaders():
                if name.lower() not in HOP_HEADERS:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            sent, held = 0, b""
            while sent + len(held) < size:
                chunk = resp.read(min(CHUNK, size - sent - len(held)))
                if not chunk:
                    raise OSError(f"fetch answer cut at {sent + len(held)} of {size} bytes")
                if state is not None:
                    state.hasher.update(chunk)
                if held:
                    self.wfile.write(held)
                    sent += len(held)
                held = chunk
            if state is not None:
                state.pos = end + 1
            if not last:
                self.wfile.write(held)
                if state is not None:
                    verifier.release(hex_digest, state)
                if start % verifier.slice_size == 0:
                    verifier.read_ahead(
                        self.path,
                        hex_digest,
                        end + 1,
                        {k: v for k, v in forward.items() if k in ("Host", "X-Edge-Secret")},
                    )
                return
            assert state is not None
            verifier.checked += 1
            if state.hasher.hexdigest() != hex_digest:
                removed = verifier.reject(hex_digest, total)
                _log("digest_mismatch", digest=hex_digest, size=total, evicted_files=removed)
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            self.wfile.write(held)

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


def make_server(listen: str, fetch: str, cache_dir: Path, slice_size: int) -> ThreadingHTTPServer:
    verifier = Verifier(fetch, cache_dir, slice_size)
    server = ThreadingHTTPServer(_host_port(listen), make_handler(verifier))
    server.daemon_threads = True
    server.verifier = verifier  # type: ignore[attr-defined]
    return server


def serve(listen: str, fetch: str, cache_dir: Path, slice_size: int) -> None:
    server = make_server(listen, fetch, cache_dir, slice_size)
    logger.info("edge digest check on %s, fills from %s, slices of %d", listen, fetch, slice_size)
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--fetch", required=True)
    parser.add_argument("--cache-dir", required=True, type=Path)
    parser.add_argument("--slice-size", default="8m", type=slice_bytes)
    args = parser.parse_args(argv)
    if not is_loopback(args.listen) or not is_loopback(args.fetch):
        # Like edge_render: a blob server on another address would be any local user's, or
        # anyone's, way around the gate's metering.
        raise EdgeConfigError("--listen and --fetch must be loopback addresses (127.0.0.1:port)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    serve(args.listen, args.fetch, args.cache_dir, args.slice_size)


if __name__ == "__main__":
    main()
