"""Batches parsed in parts by worker processes (ingest.parallel): exactly one pass's result."""

from __future__ import annotations

import os
import random
import time
from concurrent.futures.process import BrokenProcessPool

import orjson
import pytest

from ingest import parallel, parser
from tests.ingest.conftest import EDGE, assert_exact, make_tenants
from tests.ingest.logs import HOUR, LogMaker, encode, record

START = 1_764_355_200.0


def _varied_log(labels: list[str], n: int, *, seed: int) -> bytes:
    """Lines over several hours and registries, blobs of several repositories, manifests,
    refusals, agents, stamps a little out of order, unknown and empty labels, and malformed
    lines of every kind (a line longer than MAX_LINE_BYTES among them)."""
    rng = random.Random(seed)
    out = []
    ts = START
    repos = ["library/nginx", "library/redis", "acme/app"]
    for i in range(n):
        ts += rng.uniform(-2, 9)  # mostly forward
        if rng.random() < 0.03:
            out.append(
                rng.choice(
                    [
                        b"not json",
                        b"",
                        b'{"ts":1.0,"tenant":"\xff"}',
                        orjson.dumps(dict(record(ts=ts, label="x"), status="200")),
                        b'{"uri":"' + b"z" * (parser.MAX_LINE_BYTES + 100) + b'"}',
                    ]
                )
                + b"\n"
            )
            continue
        label = rng.choice(labels)
        status = rng.choice((200, 200, 206, 304, 403, 404, 429, 500))
        rec = record(
            ts=ts,
            label=label,
            status=status,
            body=rng.randrange(0, 3_000_000),
            cache=rng.choice(("HIT", "MISS", "")),
            rid=i,
            registry=rng.choice((None, "docker.io", "ghcr.io", "quay.io")),
        )
        repo = rng.choice(repos)
        rec["uri"] = rng.choice(
            [
                f"/v2/{repo}/blobs/sha256:{i:064x}",
                f"/v2/{repo}/manifests/{rng.choice(['latest', '1.2', 'sha256:' + 'ab' * 32])}",
                "/v2/",
            ]
        )
        if rng.random() < 0.5:
            rec["ua"] = rng.choice(["docker/27.1.0 go/1.22", "containerd/1.7.2", ""])
        out.append(encode(rec))
    return b"".join(out)


def _as_lists(batch: parser.Batch) -> dict:
    """Everything a batch holds, dict order included."""
    act = batch.activity
    return {
        "scalars": (batch.start, batch.end, batch.lines, batch.last_ts, batch.at_eof),
        "usage": list(batch.usage.items()),
        "late": list(batch.late.items()),
        "traffic": list(batch.traffic.items()),
        "malformed": list(batch.malformed.items()),
        "samples": batch.samples,
        **{name: list(getattr(act, name).items()) for name in vars(act)},
    }


@pytest.fixture
def small_parts(monkeypatch):
    """Parts from a few bytes on, so that small logs are cut into many."""
    monkeypatch.setattr(parallel, "PART_MIN_BYTES", 1)
    monkeypatch.setattr(parallel, "POOL_START_BYTES", 0)


@pytest.fixture
def pool():
    p = parallel.ParsePool(3)
    yield p
    p.close()


def test_parts_give_exactly_what_one_pass_gives(tmp_path, small_parts, pool):
    labels = ["aaaa1111", "bbbb2222", "cccc3333", "retired0001", "", "nosuchlabel"]
    data = _varied_log(labels, 6000, seed=1)
    path = tmp_path / "access.log"
    path.write_bytes(data + b'{"ts":1,"unfinished')  # an unfinished line is left
    retired = {"retired0001": START + 3 * HOUR + 17.5}
    with path.open("rb") as f:
        for max_lines, batches in ((1, 40), (3, 400), (999, 99), (2500, 99), (10**6, 1)):
            pos = 0
            for _ in range(batches):
                one = parser.read_batch(
                    f, start=pos, max_lines=max_lines, max_bytes=1 << 62, retired=retired
                )
                parts = pool.read(
                    f, start=pos, max_lines=max_lines, retired=retired, speculate=pos % 2 == 0
                )
                assert _as_lists(parts) == _as_lists(one), (max_lines, pos)
                assert parts == one
                pos = one.end
                if one.at_eof:
                    assert pos == len(data)
                    break
        assert pool.batches > 0
        # The status page's pass over what the meter read, in parts: the same too.
        middle = parser.read_batch(f, start=0, max_lines=2500, max_bytes=1 << 62).end
        for start, end in ((0, len(data)), (middle, len(data)), (0, middle)):
            one = parser.read_batch(
                f, start=start, max_lines=1 << 62, max_bytes=1 << 62, stop=end, activity=True
            )
            assert pool.read_activity(f, start=start, end=end) == one, (start, end)
            assert one.end == end and not one.usage and not one.traffic
        # The log has all it claims to have.
        whole = parser.read_batch(f, start=0, max_lines=10**6, max_bytes=1 << 62, retired=retired)
        seen = parser.read_batch(f, start=0, max_lines=10**6, max_bytes=1 << 62, activity=True)
    assert whole.late and whole.malformed.keys() == {"json", "encoding", "field", "too_long"}
    assert seen.activity.refusals and seen.activity.manifest_bytes and seen.activity.agent
    assert not whole.activity.first  # the meter's pass gathers none of it
    assert len({key[2] for key in whole.usage}) == 3 and len({key[1] for key in whole.usage}) > 3


def test_the_next_batch_handed_to_the_workers_is_used_only_where_it_fits(
    tmp_path, small_parts, pool
):
    labels = ["aaaa1111", "retired0001"]
    data = _varied_log(labels, 3000, seed=2)
    path = tmp_path / "access.log"
    path.write_bytes(data)
    retired = {"retired0001": START + HOUR}

    def one(start: int, retired: dict, max_lines: int = 700) -> parser.Batch:
        with path.open("rb") as g:
            return parser.read_batch(
                g, start=start, max_lines=max_lines, max_bytes=1 << 62, retired=retired
            )

    with path.open("rb") as f:
        first = pool.read(f, start=0, max_lines=700, retired={}, speculate=True)
        assert first == one(0, {}) and pool._next is not None
        # Other retirements (a Redo), another start, another size: read afresh.
        assert pool.read(f, start=first.end, max_lines=700, retired=retired) == one(
            first.end, retired
        )
        pool.read(f, start=0, max_lines=700, retired={}, speculate=True)
        assert pool.read(f, start=first.end + 1, max_lines=700, retired={}) == one(
            first.end + 1, {}
        )
        pool.read(f, start=0, max_lines=700, retired={}, speculate=True)
        assert pool.read(f, start=first.end, max_lines=600, retired={}) == one(first.end, {}, 600)
        # The same: the parts already under way are the batch.
        pool.read(f, start=0, max_lines=700, retired={}, speculate=True)
        ahead = pool._next
        assert ahead is not None and ahead.start == first.end
        second = pool.read(f, start=first.end, max_lines=700, retired={}, speculate=True)
        assert second == one(first.end, {}) and second.end == ahead.end
        assert pool._next is not None and pool._next.start == second.end
        # No next batch is parsed ahead at the end of the file (it may grow meanwhile).
        pos = second.end
        while True:
            b = pool.read(f, start=pos, max_lines=700, retired={}, speculate=True)
            assert b == one(pos, {})
            pos = b.end
            if b.at_eof:
                break
        assert pool._next is None


def test_the_end_of_a_batch_and_its_parts_fall_after_newlines(tmp_path):
    lines = [b"x" * random.Random(i).randrange(0, 300) for i in range(400)]
    lines[100] = b"y" * (parser.MAX_LINE_BYTES * 5)  # longer than a scan of the file
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / "log"
    path.write_bytes(data)
    with path.open("rb") as f:
        for start in (0, len(lines[0]) + 1):
            for max_lines in (1, 7, 100, 101, 399, 400, 5000):
                end, at_eof = parallel.batch_end(f, start=start, max_lines=max_lines)
                expected = parser.read_batch(f, start=start, max_lines=max_lines, max_bytes=1 << 62)
                assert (end, at_eof) == (expected.end, expected.at_eof)
                for n in (1, 2, 3, 8):
                    parts = parallel.split(f, start=start, end=end, parts=n)
                    assert parts[0][0] == start and parts[-1][1] == end
                    assert all(a < b for a, b in parts)
                    assert all(b == c for (_a, b), (c, _d) in zip(parts, parts[1:], strict=False))
                    assert all(data[b - 1 : b] == b"\n" for _a, b in parts)


def test_a_file_that_is_not_the_callers_is_parsed_in_the_calling_process(
    tmp_path, small_parts, pool
):
    """The worker finds another file under the name (and no descriptor to follow): the batch
    is read in the calling process, the same as always."""
    maker = LogMaker(["aaaa1111"], seed=3)
    path = tmp_path / "access.log"
    path.write_bytes(maker.lines(2000))
    with path.open("rb") as f:
        assert pool.read(f, start=0, max_lines=10**6, retired={}).lines == 2000
        assert pool.batches == 1
        path.rename(tmp_path / "access.log.1")
        path.write_bytes(maker.lines(3000))  # another file under the name
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(parallel, "_sources", lambda f: (str(path),))  # the name only
            batch = pool.read(f, start=0, max_lines=10**6, retired={})
    assert pool.batches == 1
    assert batch.lines == 2000 and batch.end == (tmp_path / "access.log.1").stat().st_size


def test_a_worker_that_dies_fails_the_pool(tmp_path, small_parts, monkeypatch):
    monkeypatch.setenv("INGEST_TEST_PARSE_DIE", "1")
    path = tmp_path / "access.log"
    path.write_bytes(LogMaker(["aaaa1111"], seed=4).lines(500))
    dying = parallel.ParsePool(2)
    try:
        with path.open("rb") as f, pytest.raises(BrokenProcessPool):
            dying.read(f, start=0, max_lines=10**6, retired={})
    finally:
        dying.close()


def test_the_workers_end_with_the_pool(tmp_path, small_parts, pool):
    path = tmp_path / "access.log"
    path.write_bytes(LogMaker(["aaaa1111"], seed=5).lines(3000))
    with path.open("rb") as f:
        assert pool.read(f, start=0, max_lines=10**6, retired={}).lines == 3000
    assert pool._pool is not None
    pids = list(pool._pool._processes)
    assert len(pids) == 3
    # Below the run's own priority (its commits and PostgreSQL go first), once started (a
    # worker spawned for the last part may still be starting when another took that part).
    niced = min(os.getpriority(os.PRIO_PROCESS, 0) + parallel.WORKER_NICE, 19)
    deadline = time.monotonic() + 30
    while {os.getpriority(os.PRIO_PROCESS, pid) for pid in pids} != {niced}:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    pool.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _in_prefork_child(path: str) -> tuple[bool, bool, int]:
    """Run in a Celery prefork pool's process (billiard): daemonic, with billiard's key."""
    import multiprocessing

    parallel.PART_MIN_BYTES = 1  # (this process's own copy of the module)
    pool = parallel.ParsePool(2)
    try:
        with open(path, "rb") as f:
            parts = pool.read(f, start=0, max_lines=10**6, retired={})
            one = parser.read_batch(f, start=0, max_lines=10**6, max_bytes=1 << 62)
        return multiprocessing.current_process().daemon, parts == one, pool.batches
    finally:
        pool.close()


def test_a_celery_prefork_worker_parses_in_parts(tmp_path):
    """The beat task runs in Celery's prefork workers: daemonic processes, which
    multiprocessing refuses children unless the pool lifts the rule (its workers end with
    the process anyway)."""
    import billiard

    path = tmp_path / "access.log"
    path.write_bytes(LogMaker(["aaaa1111", "bbbb2222"], seed=9).lines(4000))
    with billiard.Pool(1) as prefork:
        daemonic, equal, in_parts = prefork.apply(_in_prefork_child, (str(path),))
    assert daemonic and equal and in_parts == 1


@pytest.mark.django_db
def test_a_catch_up_parsed_by_workers_is_exact(django_user_model, log_path, small_parts):
    from accelerator.models import RetiredLabel, Tenant
    from ingest.models import EdgeIngest, MalformedCount
    from ingest.services import ingest_edge
    from tests.ingest.conftest import unknown_by_label

    labels = make_tenants(django_user_model, 8)
    gone = next(iter(labels))
    tenant = Tenant.objects.get(label=gone)
    RetiredLabel.objects.create(label=gone, tenant=tenant)
    tenant.label = "renewed00001"
    tenant.save()
    maker = LogMaker([*labels, "unknown0000a", ""], seed=6)
    good = maker.lines(20_000, step=0.7)
    cut = good.index(b"\n", 500_000) + 1
    log_path.write_bytes(good[:cut] + b"broken line\n" + good[cut:])
    report = ingest_edge(edge=EDGE, path=log_path, batch_lines=6000, enforce=False)
    assert report.lines == 20_000 and report.malformed == 1
    assert report.parsed_in_parts >= report.batches - 1 > 0
    # Charged to the tenants (the retired label's to its tenant), the rest unknown, once.
    labels_now = dict(labels)
    assert_exact(maker.truth, labels_now)
    assert gone not in unknown_by_label()  # retired after all its lines
    assert MalformedCount.objects.get(edge=EDGE, kind="json").count == 1
    assert EdgeIngest.objects.get(edge=EDGE).lines_total == 20_000
    assert ingest_edge(edge=EDGE, path=log_path, enforce=False).lines == 0
    assert_exact(maker.truth, labels_now)


@pytest.mark.django_db
def test_a_worker_dying_fails_the_batch_and_nothing_is_committed(
    django_user_model, log_path, small_parts, monkeypatch
):
    from ingest.models import EdgeIngest, LogFile
    from ingest.services import ingest_edge
    from quota.models import UsageBucket

    labels = make_tenants(django_user_model, 4)
    maker = LogMaker(list(labels), seed=7)
    log_path.write_bytes(maker.lines(5000))
    monkeypatch.setenv("INGEST_TEST_PARSE_DIE", "1")
    with pytest.raises(BrokenProcessPool):
        ingest_edge(edge=EDGE, path=log_path, batch_lines=2000, enforce=False)
    assert not UsageBucket.objects.exists()
    assert not LogFile.objects.filter(position__gt=0).exists()
    health = EdgeIngest.objects.get(edge=EDGE)
    assert health.lines_total == 0 and "BrokenProcessPool" in health.last_error
    monkeypatch.delenv("INGEST_TEST_PARSE_DIE")
    report = ingest_edge(edge=EDGE, path=log_path, batch_lines=2000, enforce=False)
    assert report.lines == 5000 and report.parsed_in_parts > 0
    assert_exact(maker.truth, labels)


@pytest.mark.django_db
def test_parse_workers_off_parses_in_the_runs_own_process(
    django_user_model, log_path, small_parts, settings
):
    from ingest.services import ingest_edge

    settings.INGEST_PARSE_WORKERS = 0
    labels = make_tenants(django_user_model, 3)
    maker = LogMaker([*labels, ""], seed=8)
    log_path.write_bytes(maker.lines(3000, step=0.5))
    report = ingest_edge(edge=EDGE, path=log_path, batch_lines=1000, enforce=False)
    assert report.lines == 3000 and report.batches == 3
    assert report.parsed_in_parts == 0
    assert_exact(maker.truth, dict(labels))
