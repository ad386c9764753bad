"""The edge access-log format and a fast, bounded-memory reader for it. No Django here.

One JSON object per line, written by nginx with ``escape=json``::

    {"ts":1764355200.123,"edge":"local","tenant":"<label or empty>","host":"...",
     "method":"GET","uri":"/v2/...","status":200,"bytes_sent":1234,"body_bytes_sent":1000,
     "completion":"OK","request_time":0.012,"request_id":"<32 hex>","cache":"HIT",
     "registry":"docker.io","ua":"docker/24.0.7 ..."}

``registry`` (the registry the edge routed to, e.g. ``ghcr.io``; empty for a name the edge
does not mirror) came later: a line without it is Docker Hub's, so older logs still parse.
``ua`` (the client's User-Agent, at most 256 characters) is the last field and optional too.

What a line costs (decided for the whole product, applied here only):
- every well-formed line is one request;
- the tenant is charged ``body_bytes_sent`` when the status is 200 or 206: gate refusals and
  errors are free, an aborted download (``completion`` empty) costs what nginx handed out;
- a cache hit is ``cache == "HIT"``;
- the bucket is the UTC hour of ``ts`` and the registry.

Every field is parsed and type-checked (msgspec, in C): a line with broken JSON, a missing,
extra or mistyped field, bytes that are not UTF-8 or more than ``MAX_LINE_BYTES`` is
malformed: counted, sampled and skipped. Lines are read in fixed-size chunks, so memory does
not depend on the file or on the longest line.

Two passes read a line, each with its own fold: the meter's (usage, late, traffic: ingest.batch)
and, after it, the status page's (Activity: ingest.activity).
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, BinaryIO

import msgspec

from accelerator.clients import REFUSAL_STATUSES, Pull, pull_add, pull_path

MAX_LINE_BYTES = 64 * 1024  # nginx lines are < 10 KB; anything longer is garbage
# A chunk and its lines stay in the CPU's cache while they are decoded (4 MiB: ~10 % slower).
CHUNK_BYTES = 1 << 18
SAMPLE_BYTES = 300  # what is kept of a malformed line for the dashboard
SAMPLES_PER_BATCH = 5
FINGERPRINT_BYTES = 1024  # the head of a file that identifies it besides its inode
CHARGED_STATUSES = (200, 206)
# No response is a terabyte; the bound keeps a corrupt number from overflowing the ledger's
# 64-bit sums (which would fail the batch again on every run).
MAX_RESPONSE_BYTES = 2**40
HOUR = 3600

_M = msgspec.Meta


class LogRecord(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """One access-log line. Unknown fields are refused so that no byte escapes validation."""

    ts: Annotated[float, _M(ge=0, le=4_102_444_800)]  # epoch seconds, before 2100
    edge: Annotated[str, _M(max_length=64)]
    tenant: Annotated[str, _M(max_length=63)]
    host: str
    method: str
    uri: str
    status: Annotated[int, _M(ge=0, le=999)]
    bytes_sent: Annotated[int, _M(ge=0, le=MAX_RESPONSE_BYTES)]
    body_bytes_sent: Annotated[int, _M(ge=0, le=MAX_RESPONSE_BYTES)]
    completion: str
    request_time: Annotated[float, _M(ge=0)]
    request_id: Annotated[str, _M(max_length=64)]
    cache: Annotated[str, _M(max_length=32)]
    registry: Annotated[str, _M(max_length=64)] = "docker.io"
    # Optional: lines written before the field existed have none. Unbounded here (nginx cuts
    # it at 256): a long agent must never make a charged line unreadable.
    ua: str = ""


_decoder = msgspec.json.Decoder(LogRecord)


def parse_line(line: bytes) -> LogRecord:
    """Parse one line (without its newline). Raises MalformedLine."""
    if len(line) > MAX_LINE_BYTES:
        raise MalformedLine("too_long", f"line longer than {MAX_LINE_BYTES} bytes")
    try:
        return _decoder.decode(line)
    except ValueError as exc:  # msgspec's errors; UnicodeDecodeError before msgspec 0.23
        raise _refused(line, exc) from None


def _refused(line: bytes, exc: ValueError) -> MalformedLine:
    """Why the decoder refused ``line``, by our own checks rather than the decoder's wording
    (msgspec 0.23 reports bad UTF-8 as a JSON error): broken JSON first, then bytes that are
    not UTF-8, then fields. Only refused lines come here, so good lines pay nothing."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as bad:
        # Each bad byte made a harmless U+FFFD: still not JSON means broken JSON.
        try:
            msgspec.json.decode(line.decode("utf-8", errors="replace"))
        except msgspec.DecodeError as broken:
            return MalformedLine("json", str(broken))
        return MalformedLine("encoding", f"not UTF-8: {bad.reason} at byte {bad.start}")
    if isinstance(exc, msgspec.ValidationError):
        return MalformedLine("field", str(exc))
    return MalformedLine("json", str(exc))


class MalformedLine(ValueError):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class Sample:
    """A malformed line as staff see it: where it was, why it was refused, its first bytes."""

    offset: int
    kind: str
    reason: str
    text: str


def sample_text(raw: bytes) -> str:
    """Readable and storable: undecodable bytes and NUL (refused by PostgreSQL) escaped."""
    return raw[:SAMPLE_BYTES].decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")


# (label, hour index = ts // 3600, registry) -> [charged bytes, requests, cache hits]
Buckets = dict[tuple[str, float, str], list[int]]
# The edge's traffic, every well-formed line whoever it was for (the operators' metrics):
# (status, cache status) -> [requests, bytes_sent]
Traffic = dict[tuple[int, str], list[int]]


class Seen:
    """What a batch says of one label, for the tenant's status page: first and last request,
    the latest client, its pulls and its last refusal per status. Built after the batch from
    Batch.activity (the hot loop only adds to a few flat dicts)."""

    __slots__ = ("first", "last", "agent", "pulls", "refusals")

    def __init__(self, first: float, last: float, agent: str) -> None:
        self.first = first
        self.last = last
        self.agent = agent
        self.pulls: list[Pull] = []
        self.refusals: dict[int, tuple[float, str]] = {}  # status -> (ts, uri)


@dataclass
class Activity:
    """Per-label raw material of Seen, filled line by line in _fold_activity at the cost of a
    few dict operations: first and last request, latest agent, served manifests per label and
    uri, served blob bytes per label and "/v2/<repository>", the last refusal per label and
    status.

    Keys are "<label> <path>" strings and values numbers: objects the garbage collector never
    has to scan (a dict of lists per key made parsing several times slower on large batches).
    nginx's labels never hold a space; a log line whose label does is no tenant's anyway."""

    first: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    agent: dict[str, str] = field(default_factory=dict)
    # "<label> <uri>" and "<label> /v2/<repository>" -> bytes, first and last time
    manifest_bytes: dict[str, int] = field(default_factory=dict)
    manifest_first: dict[str, float] = field(default_factory=dict)
    manifest_last: dict[str, float] = field(default_factory=dict)
    blob_bytes: dict[str, int] = field(default_factory=dict)
    blob_first: dict[str, float] = field(default_factory=dict)
    blob_last: dict[str, float] = field(default_factory=dict)
    refusals: dict[tuple[str, int], tuple[float, str]] = field(default_factory=dict)

    def extend(self, later: Activity) -> None:
        """Add the activity of the lines right after these (the parts of one step, parsed
        apart): exactly what one pass over both gives, file order included."""
        first = self.first
        for label, ts in later.first.items():
            if label not in first:
                first[label] = ts
        self.last.update(later.last)
        self.agent.update(later.agent)
        for nbytes, firsts, lasts, o_bytes, o_firsts, o_lasts in (
            (self.manifest_bytes, self.manifest_first, self.manifest_last,
             later.manifest_bytes, later.manifest_first, later.manifest_last),
            (self.blob_bytes, self.blob_first, self.blob_last,
             later.blob_bytes, later.blob_first, later.blob_last),
        ):  # fmt: skip
            for key, ts in o_firsts.items():
                if key in firsts:
                    nbytes[key] += o_bytes[key]
                else:
                    firsts[key], nbytes[key] = ts, o_bytes[key]
            lasts.update(o_lasts)
        self.refusals.update(later.refusals)

    def seen(self) -> dict[str, Seen]:
        """label -> Seen. Within one batch, a repository's blob bytes go to its latest pull
        (or to a pull without a tag when the batch has none of its manifests)."""
        out = {
            label: Seen(first, self.last[label], self.agent.get(label, ""))
            for label, first in self.first.items()
        }
        for key in sorted(self.manifest_first, key=self.manifest_first.__getitem__):
            label, _, uri = key.partition(" ")
            path = pull_path(uri)
            if path is None or label not in out:
                continue
            repo, _kind, ref = path
            pulls = out[label].pulls
            first, last = self.manifest_first[key], self.manifest_last[key]
            pull_add(pulls, repo=repo, ref=ref, nbytes=self.manifest_bytes[key], ts=first)
            pull_add(pulls, repo=repo, ref="", nbytes=0, ts=last)
        for key in sorted(self.blob_first, key=self.blob_first.__getitem__):
            label, _, prefix = key.partition(" ")
            if label not in out:
                continue
            repo = prefix[4:]  # "/v2/<repository>"
            pulls = out[label].pulls
            nbytes, first, last = self.blob_bytes[key], self.blob_first[key], self.blob_last[key]
            target = next((p for p in reversed(pulls) if p.repo == repo), None)
            if target is None:
                pull_add(pulls, repo=repo, ref="", nbytes=nbytes, ts=first)
                pull_add(pulls, repo=repo, ref="", nbytes=0, ts=last)
            else:
                target.bytes += nbytes
                target.last = max(target.last, last)
        for seen in out.values():
            seen.pulls.sort(key=lambda p: p.first)
        for (label, status), hit in self.refusals.items():
            if label in out:
                out[label].refusals[status] = hit
        return out


def _zeros3() -> list[int]:
    return [0, 0, 0]


def _zeros2() -> list[int]:
    return [0, 0]


@dataclass
class Batch:
    """What one pass over [start, end) of a file produced. ``end`` is always just after a
    newline (or == start): an unfinished last line is left for the next pass."""

    start: int
    end: int = 0
    lines: int = 0  # well-formed lines
    usage: Buckets = field(default_factory=lambda: defaultdict(_zeros3))
    # Lines of a label in ``retired`` stamped at or after its retirement: still its tenant's
    # (labels are never reissued), and also shown to staff as traffic on a retired address.
    late: Buckets = field(default_factory=lambda: defaultdict(_zeros3))
    traffic: Traffic = field(default_factory=lambda: defaultdict(_zeros2))
    malformed: dict[str, int] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    # What the tenant's status page shows (accelerator.activity stores it): Activity.seen()
    activity: Activity = field(default_factory=Activity)
    last_ts: float | None = None
    at_eof: bool = False  # nothing left but, at most, an unfinished line

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())

    def extend(self, later: Batch) -> None:
        """Add the batch that starts where this one ends (the parts of one batch, parsed in
        other processes): the result equals one pass over both."""
        assert later.start == self.end, (self.end, later.start)
        for mine, theirs in ((self.usage, later.usage), (self.late, later.late)):
            for key, acc in theirs.items():
                cur = mine[key]
                cur[0] += acc[0]
                cur[1] += acc[1]
                cur[2] += acc[2]
        for tkey, tacc in later.traffic.items():
            tcur = self.traffic[tkey]
            tcur[0] += tacc[0]
            tcur[1] += tacc[1]
        for kind, count in later.malformed.items():
            self.malformed[kind] = self.malformed.get(kind, 0) + count
        self.samples = (self.samples + later.samples)[-SAMPLES_PER_BATCH:]
        self.activity.extend(later.activity)
        self.lines += later.lines
        self.end = later.end
        if later.last_ts is not None:
            self.last_ts = later.last_ts
        self.at_eof = later.at_eof

    def _bad(self, offset: int, kind: str, reason: str, raw: bytes) -> None:
        self.malformed[kind] = self.malformed.get(kind, 0) + 1
        # A reason can quote the line (an unknown field's name): keep it storable too.
        reason = reason[:500].replace("\x00", "\\x00")
        self.samples.append(Sample(offset=offset, kind=kind, reason=reason, text=sample_text(raw)))
        if len(self.samples) > SAMPLES_PER_BATCH:
            del self.samples[0]


def _fold_usage(lines: list[bytes], batch: Batch, retired: Mapping[str, float]) -> int:
    """The meter's pass: add the lines' usage and traffic to the batch; stop at the first
    malformed line and return its index, or -1 when all were good. The hot loop: nothing per
    line that can be done per chunk (the accumulators are defaultdicts: one lookup each)."""
    decode = _decoder.decode
    usage = batch.usage
    late = batch.late
    traffic = batch.traffic
    errors = (msgspec.DecodeError, ValueError)
    hour = float(HOUR)
    r = None
    failed = -1
    for line in lines:
        try:
            r = decode(line)
        except errors:
            # Parsing is deterministic, so the first equal line is this one.
            failed = lines.index(line)
            break
        label = r.tenant
        ts = r.ts
        key = (label, ts // hour, r.registry)
        is_late = retired and label in retired and ts >= retired[label]
        acc = late[key] if is_late else usage[key]
        status = r.status
        cache = r.cache
        if status == 200 or status == 206:
            acc[0] += r.body_bytes_sent
        acc[1] += 1
        if cache == "HIT":
            acc[2] += 1
        tacc = traffic[(status, cache)]
        tacc[0] += 1
        tacc[1] += r.bytes_sent
    if r is not None:
        batch.last_ts = r.ts
    return failed


def _fold_activity(lines: list[bytes], batch: Batch, retired: Mapping[str, float]) -> int:
    """The status page's pass (Activity): like _fold_usage, for what each label did."""
    decode = _decoder.decode
    act = batch.activity
    first_seen, last_seen, agents, refusals = act.first, act.last, act.agent, act.refusals
    m_bytes, m_first, m_last = act.manifest_bytes, act.manifest_first, act.manifest_last
    b_bytes, b_first, b_last = act.blob_bytes, act.blob_first, act.blob_last
    errors = (msgspec.DecodeError, ValueError)
    r = None
    failed = -1
    for line in lines:
        try:
            r = decode(line)
        except errors:
            failed = lines.index(line)
            break
        label = r.tenant
        if not label:
            continue
        ts = r.ts
        status = r.status
        if label not in first_seen:
            first_seen[label] = ts
        last_seen[label] = ts
        if r.ua:
            agents[label] = r.ua
        if status == 200 or status == 206:
            uri = r.uri
            cut = uri.find("/blobs/")
            if cut > 0:
                akey = label + " " + uri[:cut]
                if akey in b_first:
                    b_bytes[akey] += r.body_bytes_sent
                else:
                    b_first[akey] = ts
                    b_bytes[akey] = r.body_bytes_sent
                b_last[akey] = ts
            elif "/manifests/" in uri:
                akey = label + " " + uri
                if akey in m_first:
                    m_bytes[akey] += r.body_bytes_sent
                else:
                    m_first[akey] = ts
                    m_bytes[akey] = r.body_bytes_sent
                m_last[akey] = ts
        elif status in REFUSAL_STATUSES:
            refusals[(label, status)] = (ts, r.uri[:300])
    if r is not None:
        batch.last_ts = r.ts
    return failed


Fold = Callable[[list[bytes], "Batch", Mapping[str, float]], int]


def _fold_lines(
    lines: list[bytes], offset: int, batch: Batch, retired: Mapping[str, float], fold: Fold
) -> None:
    """Fold complete lines that start at file offset ``offset``; malformed ones are sampled.

    The fast path folds runs of good lines; a malformed line is sampled (its offset is
    computed then, not for every line) and the fast path resumes after it."""
    if not lines:  # a batch that a long line, skipped across chunks, filled
        return
    if max(map(len, lines)) > MAX_LINE_BYTES:
        _fold_one_by_one(lines, offset, batch, retired, fold)  # rare: a giant line here
        return
    start = 0  # index of the first line not folded yet
    done_to = 0  # offset[start] is known for lines[:done_to]
    while True:
        part = lines[start:] if start else lines
        bad = fold(part, batch, retired)
        if bad < 0:
            batch.lines += len(part)
            return
        batch.lines += bad
        j = start + bad
        offset += sum(map(len, lines[done_to:j])) + (j - done_to)
        raw = lines[j]
        try:
            parse_line(raw)
        except MalformedLine as exc:
            batch._bad(offset, exc.kind, exc.reason, raw)
        offset += len(raw) + 1
        done_to = start = j + 1
        if start == len(lines):
            return


def _fold_one_by_one(
    lines: list[bytes], offset: int, batch: Batch, retired: Mapping[str, float], fold: Fold
) -> None:
    for raw in lines:
        try:
            parse_line(raw)
        except MalformedLine as exc:
            batch._bad(offset, exc.kind, exc.reason, raw)
        else:
            fold([raw], batch, retired)
            batch.lines += 1
        offset += len(raw) + 1


def read_batch(
    f: BinaryIO,
    *,
    start: int,
    max_lines: int,
    max_bytes: int,
    retired: Mapping[str, float] | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    stop: int | None = None,
    activity: bool = False,
) -> Batch:
    """Read complete lines from ``start`` until about max_lines/max_bytes or the end of file.

    ``retired`` maps a retired label to its retirement time (epoch): lines of that label
    stamped at or after it go to ``Batch.late`` instead of ``Batch.usage`` (both are charged;
    the split only tells staff who still uses an old address).
    ``stop``: read nothing at or after this offset (a part of a batch: it must be just after a
    newline; ingest.parallel finds it).
    ``activity``: the status page's pass (Batch.activity) instead of the meter's (usage,
    late, traffic). Lines are counted and malformed ones sampled either way.
    Memory is bounded by ``chunk_bytes`` + ``MAX_LINE_BYTES`` whatever the file holds.
    """
    retired = retired or {}
    fold = _fold_activity if activity else _fold_usage
    batch = Batch(start=start, end=start)
    f.seek(start)
    read_off = start
    pos = start  # start of the first line not yet folded
    carry = b""
    skipping = False  # inside a line longer than MAX_LINE_BYTES, looking for its end
    skip_head = b""
    while batch.lines + batch.malformed_total < max_lines and read_off - start < max_bytes:
        if stop is not None and read_off >= stop:
            break
        chunk = f.read(chunk_bytes if stop is None else min(chunk_bytes, stop - read_off))
        if not chunk:
            batch.at_eof = True
            break
        chunk_off = read_off
        read_off += len(chunk)
        if skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                continue
            batch._bad(pos, "too_long", f"line longer than {MAX_LINE_BYTES} bytes", skip_head)
            skipping = False
            skip_head = b""
            chunk = chunk[nl + 1 :]
            chunk_off += nl + 1
            pos = chunk_off
            carry = b""
        last_nl = chunk.rfind(b"\n")
        if last_nl < 0:
            carry += chunk
        else:
            lines = chunk.split(b"\n")
            lines[0] = carry + lines[0]
            carry = lines.pop()
            room = max_lines - batch.lines - batch.malformed_total
            if len(lines) > room:  # stop exactly at max_lines
                del lines[room:]
                _fold_lines(lines, pos, batch, retired, fold)
                pos += sum(map(len, lines)) + len(lines)
                break
            _fold_lines(lines, pos, batch, retired, fold)
            pos = chunk_off + last_nl + 1
        if len(carry) > MAX_LINE_BYTES:
            skipping = True
            skip_head = carry[:SAMPLE_BYTES]
            carry = b""
    batch.end = pos
    return batch


@dataclass(frozen=True)
class Fingerprint:
    """The first ``length`` bytes of a file, hashed. A file shorter than FINGERPRINT_BYTES is
    fingerprinted on what it has; the fingerprint grows with the file."""

    length: int
    digest: str


def fingerprint(f: BinaryIO, *, length: int = FINGERPRINT_BYTES) -> Fingerprint:
    f.seek(0)
    head = f.read(length)
    return Fingerprint(length=len(head), digest=hashlib.sha256(head).hexdigest())


def head_matches(f: BinaryIO, fp: Fingerprint) -> bool:
    """Does this open file start with the bytes that ``fp`` was taken from?"""
    return fingerprint(f, length=fp.length) == fp


def file_size(f: BinaryIO) -> int:
    return os.fstat(f.fileno()).st_size
