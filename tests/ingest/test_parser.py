"""The pure access-log parser: no database, no Django."""

from __future__ import annotations

import io
import random
import tracemalloc

import orjson
import pytest

from ingest import parser
from tests.ingest.logs import LogMaker, Truth, encode, record

LABELS = ["aaaa1111", "bbbb2222", "cccc3333", ""]


def _totals(batch: parser.Batch) -> dict[tuple[str, int], list[int]]:
    """Per (label, hour), every registry together."""
    out: dict[tuple[str, int], list[int]] = {}
    for (label, hour, _registry), acc in batch.usage.items():
        cur = out.setdefault((label, int(hour)), [0, 0, 0])
        for i in range(3):
            cur[i] += acc[i]
    return out


def _read_all(data: bytes, **kw) -> list[parser.Batch]:
    f = io.BytesIO(data)
    batches, pos = [], 0
    limit = kw.pop("max_lines", 10**9)
    while True:
        b = parser.read_batch(f, start=pos, max_lines=limit, max_bytes=1 << 40, **kw)
        batches.append(b)
        pos = b.end
        if b.at_eof:
            return batches


def _merge(batches: list[parser.Batch]) -> dict:
    out: dict = {}
    for b in batches:
        for key, acc in _totals(b).items():
            cur = out.setdefault(key, [0, 0, 0])
            for i in range(3):
                cur[i] += acc[i]
    return out


def test_clean_log_exact_totals_at_every_chunk_size():
    maker = LogMaker(LABELS, seed=1)
    data = maker.lines(3000, step=7.3)  # spans several hours
    expected = {k: v for k, v in maker.truth.buckets.items()}
    for chunk in (1, 7, 100, 333, 4096, 1 << 20):
        batches = _read_all(data, chunk_bytes=chunk)
        assert _merge(batches) == expected, chunk
        assert sum(b.lines for b in batches) == 3000
        assert batches[-1].end == len(data)
        assert all(b.malformed_total == 0 for b in batches)


def test_batches_end_after_a_newline_and_resume_exactly():
    maker = LogMaker(LABELS, seed=2)
    data = maker.lines(5000)
    f = io.BytesIO(data)
    pos, seen, merged = 0, 0, []
    while True:
        b = parser.read_batch(f, start=pos, max_lines=700, max_bytes=1 << 40, chunk_bytes=4096)
        assert b.end == 0 or data[b.end - 1 : b.end] == b"\n"
        assert b.lines <= 700
        seen += b.lines
        merged.append(b)
        pos = b.end
        if b.at_eof:
            break
    assert seen == 5000
    assert _merge(merged) == dict(maker.truth.buckets)


def test_charging_rules():
    lines = [
        record(ts=7200.5, label="t1", status=200, body=100, cache="HIT"),
        record(ts=7201.0, label="t1", status=206, body=50, cache="MISS"),
        record(ts=7202.0, label="t1", status=404, body=999, cache=""),  # refusal: free
        record(ts=7203.0, label="t1", status=429, body=120, cache=""),
        record(ts=7204.0, label="t1", status=304, body=0, cache="HIT"),
        record(ts=10799.999, label="t1", status=500, body=77, cache="EXPIRED"),
        record(ts=10800.0, label="t1", status=200, body=5, cache="hit"),  # next hour; not HIT
    ]
    aborted = record(ts=7205.0, label="t1", status=200, body=4096)
    aborted["completion"] = ""  # an aborted download is charged what nginx sent
    lines.append(aborted)
    b = _read_all(b"".join(encode(r) for r in lines))[0]
    assert _totals(b) == {("t1", 2): [100 + 50 + 4096, 7, 2], ("t1", 3): [5, 1, 0]}


def test_partial_last_line_is_left_for_later():
    maker = LogMaker(LABELS, seed=3)
    full = maker.lines(10)
    cut = len(full) - 17
    f = io.BytesIO(full[:cut])
    b = parser.read_batch(f, start=0, max_lines=100, max_bytes=1 << 40)
    assert b.lines == 9 and b.at_eof and b.malformed_total == 0
    assert b.end == full.rindex(b"\n", 0, len(full) - 1) + 1
    f = io.BytesIO(full)  # the rest of the line arrives
    b2 = parser.read_batch(f, start=b.end, max_lines=100, max_bytes=1 << 40)
    assert b2.lines == 1 and b2.end == len(full)
    assert _merge([b, b2]) == dict(maker.truth.buckets)


def _good(label="t1", ts=3600.0, body=10) -> bytes:
    return encode(record(ts=ts, label=label, body=body))


def _bad_lines() -> list[tuple[str, bytes]]:
    good = record(ts=3600.0, label="t1")
    mistyped_status = dict(good, status="200")
    float_status = dict(good, status=200.0)
    bool_bytes = dict(good, body_bytes_sent=True)
    negative = dict(good, body_bytes_sent=-5)
    missing = {k: v for k, v in good.items() if k != "tenant"}
    extra = dict(good, extra="x")
    long_label = dict(good, tenant="x" * 64)
    null_field = dict(good, cache=None)
    return [
        ("json", b'{"ts":3600.0,"edge":"local","tenant":"t1"'),  # truncated JSON
        ("json", b"not json at all"),
        ("json", b""),  # an empty line
        ("json", b'{"ts":NaN}'),
        ("json", orjson.dumps(good)[:-1] + b',"ts":}'),
        ("field", b"[1,2,3]"),
        ("field", orjson.dumps(mistyped_status)),
        ("field", orjson.dumps(float_status)),
        ("field", orjson.dumps(bool_bytes)),
        ("field", orjson.dumps(negative)),
        ("field", orjson.dumps(dict(good, body_bytes_sent=2**40 + 1))),
        ("field", orjson.dumps(good).replace(b'"status":200', b'"status":1' + b"0" * 30)),
        ("field", orjson.dumps(missing)),
        ("field", orjson.dumps(extra)),  # no byte of a line escapes validation
        ("field", orjson.dumps(long_label)),
        ("field", orjson.dumps(null_field)),
        ("field", orjson.dumps(good)[:-1] + b',"x\\u0000y":1}'),  # quoted in the reason
        ("encoding", orjson.dumps(good).replace(b'"t1"', b'"t\xff\xfe"')),
        ("json", b"\x80\x81garbage\x00\x01"),  # not JSON before it is not UTF-8
        ("json", orjson.dumps(good).replace(b'"t1"', b'"t\\ud800"')),  # lone surrogate
        ("too_long", b'{"ts":1,"uri":"' + b"a" * (parser.MAX_LINE_BYTES + 10) + b'"}'),
    ]


def test_every_kind_of_malformed_line_is_counted_sampled_and_skipped():
    bad = _bad_lines()
    data = b""
    for _kind, raw in bad:
        data += _good() + raw + b"\n"
    data += _good()
    for chunk in (1 << 20, 4096, 97):
        batches = _read_all(data, chunk_bytes=chunk)
        kinds: dict[str, int] = {}
        for b in batches:
            for k, n in b.malformed.items():
                kinds[k] = kinds.get(k, 0) + n
        expected: dict[str, int] = {}
        for k, _ in bad:
            expected[k] = expected.get(k, 0) + 1
        assert kinds == expected, chunk
        assert sum(b.lines for b in batches) == len(bad) + 1
        assert _merge(batches) == {("t1", 1): [10 * (len(bad) + 1), len(bad) + 1, 0]}
        assert batches[-1].end == len(data)
    b = _read_all(data)[0]
    # The last few are kept, with the exact offset of each line and a readable reason.
    assert len(b.samples) == parser.SAMPLES_PER_BATCH
    for s in b.samples:
        line_end = data.index(b"\n", s.offset)
        raw = data[s.offset : line_end]
        assert raw not in {_good().rstrip(b"\n")}
        assert s.text == parser.sample_text(raw)
        assert len(s.text) <= parser.SAMPLE_BYTES * 4
        assert s.reason
    assert b.samples[-1].kind == "too_long"
    assert (
        b.samples[-2].reason.startswith("JSON is malformed") or "truncated" in b.samples[-2].reason
    )


def test_parse_line_reports_kind_and_reason():
    with pytest.raises(parser.MalformedLine) as exc:
        parser.parse_line(orjson.dumps(dict(record(ts=1.0, label="x"), status="200")))
    assert exc.value.kind == "field" and "status" in exc.value.reason
    with pytest.raises(parser.MalformedLine) as exc:
        parser.parse_line(b'{"ts":1.0,"tenant":"\xff"}')
    assert exc.value.kind == "encoding"
    rec = parser.parse_line(encode(record(ts=5.5, label="x", status=206, body=3)).rstrip())
    assert (rec.ts, rec.tenant, rec.status, rec.body_bytes_sent) == (5.5, "x", 206, 3)


def test_encoding_is_classified_by_the_bytes_not_the_decoders_wording():
    """Broken JSON first, then bytes that are not UTF-8, then fields: the same with any
    msgspec (0.23 reports bad UTF-8 as a JSON error, 0.22 as UnicodeDecodeError)."""
    good = orjson.dumps(record(ts=1.0, label="t1"))
    cases = [
        ("encoding", good.replace(b'"t1"', b'"\xc3"'), "at byte "),
        ("encoding", good.replace(b'"ts"', b'"t\xffs"'), "at byte "),  # in a key
        ("json", good.replace(b"1.0", b"\xff"), "malformed"),  # not even a value
        ("json", b'{"tenant":"\xff", broken', "malformed"),
    ]
    for kind, raw, words in cases:
        with pytest.raises(parser.MalformedLine) as exc:
            parser.parse_line(raw)
        assert (exc.value.kind, words in exc.value.reason) == (kind, True), raw


def test_a_huge_line_keeps_memory_flat():
    huge = b'{"uri":"' + b"z" * (40 * 1024 * 1024) + b'"}\n'
    data = _good(body=1) + huge + _good(body=2)
    tracemalloc.start()
    try:
        f = io.BytesIO(data)
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        b = parser.read_batch(f, start=0, max_lines=100, max_bytes=1 << 40, chunk_bytes=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert b.malformed == {"too_long": 1}
    assert b.lines == 2 and b.end == len(data)
    assert _totals(b) == {("t1", 1): [3, 2, 0]}
    assert peak - base < 8 * 1024 * 1024  # chunks of 1 MiB, not the 40 MB line
    assert b.samples[0].offset == len(_good(body=1)) and b.samples[0].text.startswith('{"uri":"zzz')


def test_a_huge_unfinished_line_at_the_end_waits_for_its_newline():
    data = _good() + b'{"uri":"' + b"y" * (parser.MAX_LINE_BYTES * 3)
    b = _read_all(data, chunk_bytes=65536)[-1]
    assert b.end == len(_good()) and b.malformed_total == 0 and b.lines == 1
    data += b'"}\n' + _good()
    b2 = parser.read_batch(io.BytesIO(data), start=b.end, max_lines=100, max_bytes=1 << 40)
    assert b2.malformed == {"too_long": 1} and b2.lines == 1 and b2.end == len(data)


def test_retired_labels_are_split_at_their_retirement():
    lines = [record(ts=t, label="old", body=10) for t in (3600.0, 3700.0, 3799.999, 3800.0, 3900.0)]
    lines.append(record(ts=3650.0, label="cur", body=1))
    b = _read_all(b"".join(encode(r) for r in lines), retired={"old": 3800.0})[0]
    assert _totals(b) == {("old", 1): [30, 3, 0], ("cur", 1): [1, 1, 0]}
    assert {(label, int(h)): acc for (label, h, _r), acc in b.late.items()} == {
        ("old", 1): [20, 2, 0]
    }
    assert b.last_ts == 3650.0


def test_fingerprint_grows_with_the_file_and_tells_heads_apart():
    f = io.BytesIO(b"abc")
    fp = parser.fingerprint(f)
    assert fp.length == 3
    g = io.BytesIO(b"abc" + b"d" * 5000)
    assert parser.head_matches(g, fp)
    assert not parser.head_matches(io.BytesIO(b"abX" + b"d" * 5000), fp)
    assert parser.fingerprint(g).length == parser.FINGERPRINT_BYTES


def test_random_garbage_never_breaks_the_totals():
    rng = random.Random(11)
    maker = LogMaker(LABELS, seed=5)
    parts = []
    expected = Truth()
    for _ in range(2000):
        if rng.random() < 0.1:
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
            parts.append(junk.replace(b"\n", b"") + b"\n")
        else:
            parts.append(maker.line())
    expected.merge(maker.truth)
    data = b"".join(parts)
    batches = _read_all(data, chunk_bytes=1000)
    assert _merge(batches) == dict(expected.buckets)
    assert sum(b.lines for b in batches) + sum(b.malformed_total for b in batches) == len(parts)


def test_a_batch_filled_by_a_huge_line_across_chunks_ends_after_it():
    huge = b'{"uri":"' + b"w" * (parser.MAX_LINE_BYTES * 3) + b'"}\n'
    data = _good(body=1) + huge + _good(body=2)
    f = io.BytesIO(data)
    b = parser.read_batch(f, start=0, max_lines=2, max_bytes=1 << 40, chunk_bytes=65536)
    assert (b.lines, b.malformed, b.end) == (1, {"too_long": 1}, len(_good(body=1)) + len(huge))
    b2 = parser.read_batch(f, start=b.end, max_lines=2, max_bytes=1 << 40, chunk_bytes=65536)
    assert (b2.lines, b2.malformed_total, b2.end, b2.at_eof) == (1, 0, len(data), True)
