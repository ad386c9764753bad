"""The digest check's counters on their way to the operators: /@stats read by the edge's gate
sync (edge.state), added up across restarts in EdgeState, exported by /metrics. Every answer
that is not the digest check's is reported and never counted."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edge.blob_verify import COUNTERS, make_server
from edge.models import EdgeState
from edge.state import VerifyStats, edge_state_record, fill_totals
from ops.metrics import FILL_COUNTERS

pytestmark = pytest.mark.django_db


def stats(started: float, **counts: int) -> VerifyStats:
    return VerifyStats(started=started, counts=counts, memory_bytes=0, fills_in_flight=0)


def test_every_counter_of_the_digest_check_is_a_metric():
    assert set(FILL_COUNTERS) == set(COUNTERS)


def test_totals_add_what_is_new_and_begin_again_after_a_restart():
    first = stats(100.0, fills=5, joins=2)
    totals = fill_totals({}, {}, first)
    assert totals == dict.fromkeys(COUNTERS, 0) | {"fills": 5, "joins": 2}
    last = {"started": 100.0, "counts": {"fills": 5, "joins": 2}}
    # The same process: only the difference is new.
    totals = fill_totals(totals, last, stats(100.0, fills=7, joins=2, digest_mismatches=1))
    assert totals["fills"] == 7 and totals["joins"] == 2 and totals["digest_mismatches"] == 1
    last = {"started": 100.0, "counts": {"fills": 7, "joins": 2, "digest_mismatches": 1}}
    # A restart (another start time) counts from 0: all of its reading is new.
    totals = fill_totals(totals, last, stats(200.0, fills=3))
    assert totals["fills"] == 10 and totals["digest_mismatches"] == 1
    # Counters that went back without a new start time began again too; never negative.
    totals = fill_totals(totals, {"started": 200.0, "counts": {"fills": 3}}, stats(200.0, fills=1))
    assert totals["fills"] == 11
    # Names that are not counters are not kept.
    assert set(fill_totals({}, {}, stats(1.0, bogus=9))) == set(COUNTERS)


@contextmanager
def answering(status: int, body: bytes) -> Iterator[str]:
    """A loopback server that answers every GET with ``body``: what may sit on the digest
    check's address when it is not the digest check."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as listen:
        yield listen


@contextmanager
def digest_check(tmp_path: Path) -> Iterator[str]:
    """The real digest check (its fetch server is never asked: only /@stats is read)."""
    with serving(make_server("127.0.0.1:0", "127.0.0.1:9", tmp_path, 1 << 20)) as listen:
        yield listen


@contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[str]:
    """The server's address while it serves in a thread; closed after."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def record(listen: str) -> EdgeState:
    edge_state_record(
        edge="east",
        tenants=1,
        reloaded=False,
        cache_dir=Path("/nonexistent"),
        cache_max_size="1g",
        verify_listen=listen,
    )
    return EdgeState.objects.get(edge="east")


def metrics(client) -> str:
    return client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()


def test_the_gate_sync_records_the_digest_checks_counters(client, tmp_path):
    with digest_check(tmp_path) as listen:
        state = record(listen)
    assert state.verify_error == "" and state.verify_read_at is not None
    assert state.fill_counts == dict.fromkeys(COUNTERS, 0)
    assert state.fill_reading["started"] > 0
    text = metrics(client)
    assert 'accel_edge_verify_up{edge="east"} 1.0' in text
    assert 'accel_edge_fills_total{edge="east"} 0.0' in text
    assert 'accel_edge_digest_mismatches_total{edge="east"} 0.0' in text
    assert 'accel_edge_fill_memory_bytes{edge="east"} 0.0' in text


@pytest.mark.parametrize(
    ("status", "body", "why"),
    [
        (200, b"<html>not json</html>", "answered no digest-check stats"),
        (200, b'{"started": 1, "counts": {"fills": -5}, "memory_bytes": 0, '
              b'"fills_in_flight": 0}', "answered no digest-check stats"),
        (200, b'{"started": 1, "counts": {}, "memory_bytes": 0}', "answered no digest-check"),
        (200, b'{"started": 1, "counts": {}, "memory_bytes": 0, "fills_in_flight": 0, '
              b'"extra": 1}', "answered no digest-check stats"),
        (200, b'{"started": 1, "counts": {"fills": 1e300}, "memory_bytes": 0, '
              b'"fills_in_flight": 0}', "answered no digest-check stats"),
        (200, b"[" * 20000, "more than"),
        (404, b"", "answered 404"),
    ],
    ids=["html", "negative", "missing-field", "extra-field", "huge-number", "too-long", "404"],
)  # fmt: skip
def test_an_answer_that_is_not_the_digest_checks_is_reported_never_counted(
    client, tmp_path, status, body, why
):
    with digest_check(tmp_path) as listen:
        before = record(listen)
    with answering(status, body) as listen:
        after = record(listen)
    assert why in after.verify_error and listen in after.verify_error
    # Nothing counted, the last good reading kept (the next one adds from it).
    assert after.fill_counts == before.fill_counts
    assert after.fill_reading == before.fill_reading
    assert after.verify_read_at == before.verify_read_at
    assert after.gate_synced_at > before.gate_synced_at  # the sync itself is still recorded
    text = metrics(client)
    assert 'accel_edge_verify_up{edge="east"} 0.0' in text
    assert 'accel_edge_fills_total{edge="east"} 0.0' in text


def test_a_digest_check_that_does_not_answer_is_reported(client, tmp_path):
    with digest_check(tmp_path) as listen:
        pass  # closed: nothing listens there any more
    state = record(listen)
    assert state.verify_error.startswith(f"no answer from {listen}")
    assert state.verify_read_at is None
    text = metrics(client)
    assert 'accel_edge_verify_up{edge="east"} 0.0' in text
    # Never read: no counters are made up.
    assert "accel_edge_fills_total{" not in text
