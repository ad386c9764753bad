"""Ingestion into PostgreSQL, each test against the ground truth written with its log."""

from __future__ import annotations

import os
import shutil
from datetime import timedelta

import orjson
import pytest
from django.test import override_settings
from django.utils import timezone

from ingest.models import EdgeIngest, LogFile, MalformedCount, MalformedSample, UnknownTraffic
from ingest.parser import sample_text
from ingest.services import ingest_edge
from quota.models import UsageBucket
from tests.ingest.conftest import (
    EDGE,
    assert_exact,
    expected_usage,
    make_tenants,
    usage_by_tenant_hour,
)
from tests.ingest.logs import LogMaker, Truth, encode, record

pytestmark = pytest.mark.django_db


def ingest(path, **kw):
    return ingest_edge(edge=EDGE, path=path, **kw)


@pytest.fixture
def labels(django_user_model):
    return make_tenants(django_user_model, 6)


def _labels_with_strangers(labels):
    return [*labels, "unknown0000a", "", "zzzzzzzzzzzz"]


def test_clean_log_exact_totals_and_replay_changes_nothing(labels, log_path):
    maker = LogMaker(_labels_with_strangers(labels), seed=1)
    log_path.write_bytes(maker.lines(4000, step=3.7))  # about four hours
    report = ingest(log_path, batch_lines=900)
    assert report.lines == 4000 and report.malformed == 0 and not report.busy
    assert report.batches >= 4
    assert_exact(maker.truth, labels)
    # Running again, as beat does every few seconds, adds nothing.
    again = ingest(log_path)
    assert again.lines == 0
    assert_exact(maker.truth, labels)
    health = EdgeIngest.objects.get(edge=EDGE)
    assert health.lines_total == 4000 and health.bytes_total == log_path.stat().st_size
    assert health.bytes_behind == 0 and health.seconds_behind == 0
    assert health.unknown_requests_total == sum(
        acc[1] for (label, _), acc in maker.truth.buckets.items() if label not in labels
    )
    assert health.lines_per_second > 0


def test_appended_lines_are_picked_up_and_counted_once(labels, log_path):
    maker = LogMaker(list(labels), seed=2)
    log_path.write_bytes(maker.lines(500))
    ingest(log_path)
    with log_path.open("ab") as f:
        f.write(maker.lines(300))
    assert ingest(log_path).lines == 300
    assert_exact(maker.truth, labels)


def test_partial_last_lines_wait_for_their_newline(labels, log_path):
    maker = LogMaker(list(labels), seed=3)
    whole = maker.lines(50)
    cuts = [0, 1, 333, 334, 1200, len(whole) - 1, len(whole)]
    written = 0
    with log_path.open("wb") as f:
        for cut in cuts:
            f.write(whole[written:cut])
            f.flush()
            written = cut
            ingest(log_path)
            done = whole[:cut].count(b"\n")
            assert EdgeIngest.objects.get(edge=EDGE).lines_total == done
    assert_exact(maker.truth, labels)
    row = LogFile.objects.get(edge=EDGE, state=LogFile.State.CURRENT)
    assert row.position == len(whole)


@override_settings(INGEST_ROTATED_IDLE_SECONDS=3600)
def test_rename_rotation_mid_run_finishes_the_old_file_first(labels, log_path):
    maker = LogMaker(list(labels), seed=4)
    first = maker.lines(700)
    unread = maker.lines(400)
    half_line = maker.line()
    with log_path.open("wb") as f:
        f.write(first)
    ingest(log_path, batch_lines=300)
    with log_path.open("ab") as f:
        f.write(unread + half_line[:40])  # nginx is mid-line when logrotate renames
    rotated = log_path.with_name("access.log.1")
    os.rename(log_path, rotated)
    # nginx keeps writing to the renamed file until it reopens its log...
    late = maker.lines(100)
    with rotated.open("ab") as f:
        f.write(half_line[40:] + late)
    # ...then writes to a new file at the same path.
    new = maker.lines(600)
    log_path.write_bytes(new)
    # One batch only: it goes to the rest of the renamed file, not to the new one.
    one = ingest(log_path, batch_lines=250, max_seconds=0)
    assert one.lines == 250
    rows = {f.state: f for f in LogFile.objects.filter(edge=EDGE)}
    assert rows["current"].position == 0 and rows["rotated"].position > len(first)
    health = EdgeIngest.objects.get(edge=EDGE)
    assert health.bytes_behind == (
        rotated.stat().st_size - rows["rotated"].position + log_path.stat().st_size
    )
    assert health.seconds_behind > 0  # the log's clock is in 2025: far behind "now"
    report = ingest(log_path, batch_lines=250)
    assert one.lines + report.lines == 400 + 1 + 100 + 600
    assert_exact(maker.truth, labels)
    files = {f.state: f for f in LogFile.objects.filter(edge=EDGE)}
    assert (
        files["rotated"].path == str(rotated)
        and files["rotated"].position == rotated.stat().st_size
    )
    # Lines that still reach the renamed file (a slow worker) are read until it goes idle.
    straggler = maker.lines(5)
    with rotated.open("ab") as f:
        f.write(straggler)
    assert ingest(log_path).lines == 5
    assert_exact(maker.truth, labels)
    with override_settings(INGEST_ROTATED_IDLE_SECONDS=0):
        ingest(log_path)
    assert LogFile.objects.get(pk=files["rotated"].pk).state == LogFile.State.DONE
    assert not LogFile.objects.get(pk=files["rotated"].pk).lost


@override_settings(INGEST_ROTATED_IDLE_SECONDS=3600)
def test_renamed_before_nginx_reopens_is_followed_until_the_new_file_appears(labels, log_path):
    """logrotate with nocreate: between the rename and nginx's reopen there is no file at
    the path, and nginx goes on writing to the renamed one."""
    maker = LogMaker(list(labels), seed=14)
    log_path.write_bytes(maker.lines(50))
    ingest(log_path)
    rotated = log_path.with_name("access.log.1")
    os.rename(log_path, rotated)
    with rotated.open("ab") as f:
        f.write(maker.lines(30))
    assert ingest(log_path).lines == 30
    assert_exact(maker.truth, labels)
    with rotated.open("ab") as f:
        f.write(maker.lines(5))
    log_path.write_bytes(maker.lines(20))  # nginx reopened
    assert ingest(log_path).lines == 25
    assert_exact(maker.truth, labels)
    states = sorted(LogFile.objects.filter(edge=EDGE).values_list("state", flat=True))
    assert states == ["current", "rotated"]


@override_settings(INGEST_ROTATED_IDLE_SECONDS=0)
def test_two_renames_between_runs_and_a_deleted_file_is_reported_lost(labels, log_path):
    maker = LogMaker(list(labels), seed=5)
    log_path.write_bytes(maker.lines(100))
    ingest(log_path)
    with log_path.open("ab") as f:
        f.write(maker.lines(10))  # unread when renamed: read from access.log.1 next run
    os.rename(log_path, log_path.with_name("access.log.1"))
    log_path.write_bytes(maker.lines(50))
    ingest(log_path)
    # Two rotations before the next run; the oldest file is deleted, but it was finished.
    os.rename(log_path.with_name("access.log.1"), log_path.with_name("access.log.2"))
    os.rename(log_path, log_path.with_name("access.log.1"))
    log_path.with_name("access.log.2").unlink()
    log_path.write_bytes(maker.lines(20))
    ingest(log_path)
    assert_exact(maker.truth, labels)
    assert EdgeIngest.objects.get(edge=EDGE).files_lost == 0
    # A rotation whose old file is compressed away before its rest was read: reported lost.
    gone = LogMaker(list(labels), seed=98)
    with log_path.open("ab") as f:
        f.write(gone.lines(7))
    os.rename(log_path, log_path.with_name("access.log.9.gz"))
    log_path.write_bytes(maker.lines(3))
    ingest(log_path)
    assert_exact(maker.truth, labels)
    health = EdgeIngest.objects.get(edge=EDGE)
    assert health.files_lost == 1 and "vanished" in health.last_error


@override_settings(INGEST_ROTATED_IDLE_SECONDS=0)
def test_copytruncate_reads_the_rest_from_the_copy(labels, log_path):
    maker = LogMaker(list(labels), seed=6)
    log_path.write_bytes(maker.lines(300))
    ingest(log_path)
    with log_path.open("ab") as f:
        f.write(maker.lines(200))  # not read yet when logrotate copies and truncates
    shutil.copyfile(log_path, log_path.with_name("access.log.1"))
    with log_path.open("r+b") as f:
        f.truncate(0)
    with log_path.open("ab") as f:  # nginx goes on (O_APPEND) into the emptied file
        f.write(maker.lines(1000))  # grows past the old position: the head tells
    report = ingest(log_path)
    assert report.lines == 1200
    assert_exact(maker.truth, labels)
    states = sorted(LogFile.objects.filter(edge=EDGE).values_list("state", "lost"))
    assert states == [("current", False), ("done", False)]


@override_settings(INGEST_ROTATED_IDLE_SECONDS=0)
def test_copytruncate_with_the_same_head_but_shorter(labels, log_path):
    maker = LogMaker(list(labels), seed=7)
    head = maker.lines(10)  # at least the fingerprint's length
    assert len(head) > 1024
    log_path.write_bytes(head + maker.lines(200))
    ingest(log_path)
    shutil.copyfile(log_path, log_path.with_name("access.log.1"))
    # The emptied file starts again with the very same bytes (the same ten requests logged
    # again, byte for byte) but is shorter than the old position.
    again = Truth()
    for raw in head.splitlines(keepends=True):
        again.add(orjson.loads(raw))
    maker.truth.merge(again)
    log_path.write_bytes(head)
    assert ingest(log_path).lines == 10
    assert_exact(maker.truth, labels)


@override_settings(INGEST_ROTATED_IDLE_SECONDS=0)
def test_truncation_without_a_copy_is_reported_and_ingestion_goes_on(labels, log_path):
    maker = LogMaker(list(labels), seed=8)
    log_path.write_bytes(maker.lines(100))
    ingest(log_path)
    with log_path.open("r+b") as f:
        f.truncate(0)
    with log_path.open("ab") as f:
        f.write(maker.lines(40))
    assert ingest(log_path).lines == 40
    assert_exact(maker.truth, labels)
    health = EdgeIngest.objects.get(edge=EDGE)
    assert health.files_lost == 1 and "truncated" in health.last_error


def test_malformed_lines_are_counted_per_edge_sampled_and_skipped(labels, log_path):
    from tests.ingest.test_parser import _bad_lines

    maker = LogMaker(list(labels), seed=9)
    bad = _bad_lines()
    with log_path.open("wb") as f:
        for _kind, raw in bad * 2:
            f.write(maker.line() + raw + b"\n")
        f.write(maker.line())
    report = ingest(log_path)
    assert report.malformed == len(bad) * 2
    assert_exact(maker.truth, labels)
    counts = dict(MalformedCount.objects.filter(edge=EDGE).values_list("kind", "count"))
    expected: dict[str, int] = {}
    for kind, _ in bad:
        expected[kind] = expected.get(kind, 0) + 2
    assert counts == expected
    samples = list(MalformedSample.objects.filter(edge=EDGE).order_by("id"))
    assert 0 < len(samples) <= 20
    data = log_path.read_bytes()
    for s in samples:
        assert s.path == str(log_path) and s.reason and s.kind in expected
        raw = data[s.offset : data.index(b"\n", s.offset)]
        assert s.text == sample_text(raw)
    assert samples[-1].kind == "too_long"
    assert EdgeIngest.objects.get(edge=EDGE).malformed_total == len(bad) * 2
    # The last 20 only: a second file of garbage replaces the oldest samples.
    with log_path.open("ab") as f:
        for i in range(30):
            f.write(b"garbage %d\n" % i)
    ingest(log_path)
    kept = list(MalformedSample.objects.filter(edge=EDGE).order_by("id"))
    assert len(kept) <= 20 and kept[-1].text == "garbage 29"


def test_unknown_empty_and_retired_labels(django_user_model, log_path):
    from accelerator.models import Tenant
    from accelerator.services import tenant_rotate

    labels = make_tenants(django_user_model, 2)
    old_label, keep_label = sorted(labels)
    tenant = Tenant.objects.get(label=old_label)
    new_label = tenant_rotate(tenant=tenant).label
    retired_at = tenant.retired_labels.get().retired_at.timestamp()
    lines = [
        record(ts=retired_at - 30, label=old_label, body=1000),  # before: the tenant's
        record(ts=retired_at - 0.5, label=old_label, body=100, cache="HIT"),
        # After: still the tenant's (the label was issued to it), and shown to staff as
        # traffic on a retired label.
        record(ts=retired_at + 0.5, label=old_label, body=10),
        record(ts=retired_at + 60, label=old_label, status=404, body=0),
        record(ts=retired_at + 1, label=new_label, body=7),
        record(ts=retired_at + 2, label=keep_label, body=3),
        record(ts=retired_at + 3, label="nosuchlabel1", status=404, body=0),
        record(ts=retired_at + 4, label="", status=400, body=150),
    ]
    log_path.write_bytes(b"".join(encode(r) for r in lines))
    ingest(log_path)
    totals = {}
    for (tenant_id, _hour), acc in usage_by_tenant_hour().items():
        cur = totals.setdefault(tenant_id, [0, 0, 0])
        for i in range(3):
            cur[i] += acc[i]
    assert totals == {tenant.pk: [1117, 5, 1], labels[keep_label]: [3, 1, 0]}
    rows = {u.label: u for u in UnknownTraffic.objects.filter(edge=EDGE)}
    assert set(rows) == {old_label, "nosuchlabel1", ""}
    assert (rows[old_label].requests, rows[old_label].bytes, rows[old_label].retired) == (
        2,
        10,
        True,
    )
    assert (rows["nosuchlabel1"].requests, rows["nosuchlabel1"].retired) == (1, False)
    assert (rows[""].requests, rows[""].bytes) == (1, 0)  # a 400 costs nothing
    assert EdgeIngest.objects.get(edge=EDGE).unknown_requests_total == 4


def test_a_label_retired_long_ago_inside_the_hour_of_old_lines(django_user_model, log_path):
    """The run preloads recent retirements only; an old one inside a batch's hour makes it
    parse that batch again with the exact retirement time (no line on the wrong side of
    staff's view), and every line is still charged to the tenant, once."""
    from accelerator.models import RetiredLabel, Tenant
    from accelerator.services import tenant_rotate

    labels = make_tenants(django_user_model, 1)
    (old_label,) = labels
    tenant = Tenant.objects.get(label=old_label)
    tenant_rotate(tenant=tenant)
    long_ago = timezone.now().replace(minute=30, second=0, microsecond=0) - timedelta(days=9)
    RetiredLabel.objects.filter(label=old_label).update(retired_at=long_ago)
    t = long_ago.timestamp()
    lines = [
        record(ts=t - 600, label=old_label, body=5),
        record(ts=t + 600, label=old_label, body=9),
    ]
    log_path.write_bytes(b"".join(encode(r) for r in lines))
    ingest(log_path)
    assert list(usage_by_tenant_hour().values()) == [[14, 2, 0]]
    assert UnknownTraffic.objects.get(label=old_label).bytes == 9


def test_usage_reaches_enforcement(django_user_model, log_path, settings):
    """After a batch commits, the ledger learns the tenants: one that ran out is exhausted
    and the gate refuses it."""
    from accelerator.gate import GateState, gate_table
    from accelerator.models import Tenant

    settings.QUOTA_MONTHLY_BYTES = 10_000
    labels = make_tenants(django_user_model, 2)
    spender, saver = sorted(labels)
    now = timezone.now().timestamp()
    lines = [record(ts=now - 5, label=spender, body=6000), record(ts=now - 4, label=saver, body=10)]
    log_path.write_bytes(b"".join(encode(r) for r in lines))
    ingest(log_path)
    assert Tenant.objects.get(label=spender).exhausted_at is None
    with log_path.open("ab") as f:
        f.write(encode(record(ts=now - 3, label=spender, body=4000)))
    ingest(log_path)
    assert Tenant.objects.get(label=spender).exhausted_at is not None
    assert Tenant.objects.get(label=saver).exhausted_at is None
    table = gate_table()
    assert table[spender] in {GateState.EXHAUSTED, GateState.EXHAUSTED_ALL}
    assert table[saver] == GateState.ACTIVE


def test_no_log_file_yet_is_not_an_error(log_path):
    report = ingest(log_path)
    assert report.lines == 0 and not report.busy
    assert not LogFile.objects.exists()
    log_path.write_bytes(b"")
    assert ingest(log_path).lines == 0
    assert LogFile.objects.get().position == 0


def test_the_task_and_its_beat_entry(labels, log_path, settings):
    from ingest.tasks import ingest_edge_log

    maker = LogMaker(list(labels), seed=10)
    log_path.write_bytes(maker.lines(200))
    settings.EDGE_NAME, settings.EDGE_ACCESS_LOG = EDGE, log_path
    result = ingest_edge_log.apply(kwargs={"edge": EDGE}).get()
    assert result["lines"] == 200 and result["busy"] is False
    assert_exact(maker.truth, labels)
    assert ingest_edge_log.acks_late and ingest_edge_log.time_limit
    entry = settings.CELERY_BEAT_SCHEDULE["ingest-edge-log"]
    assert entry["task"] == "ingest.tasks.ingest_edge_log"
    assert entry["schedule"] <= 5
    assert entry["kwargs"] == {"edge": settings.EDGE_NAME}


def test_the_task_takes_no_path_from_the_broker(labels, log_path, tmp_path, settings):
    """A message naming a file (any other argument) is refused: nothing read, nothing charged."""
    from ingest.tasks import ingest_edge_log

    settings.EDGE_NAME, settings.EDGE_ACCESS_LOG = EDGE, log_path
    other = tmp_path / "elsewhere.log"
    other.write_bytes(LogMaker(list(labels), seed=13).lines(50))
    for hostile in ({"path": str(other)}, {"path": "/etc/shadow"}, {"path": None}, {"x": 1}):
        result = ingest_edge_log.apply(kwargs={"edge": EDGE, **hostile}).get()
        assert "refused" in result
    assert not LogFile.objects.exists()
    assert not UsageBucket.objects.exists()


def test_usage_is_per_edge(labels, tmp_path):
    a = tmp_path / "a" / "access.log"
    b = tmp_path / "b" / "access.log"
    a.parent.mkdir()
    b.parent.mkdir()
    ma = LogMaker(list(labels), seed=11)
    mb = LogMaker(list(labels), seed=12)
    a.write_bytes(ma.lines(300))
    b.write_bytes(mb.lines(200))
    ingest_edge(edge="edge-a", path=a)
    ingest_edge(edge="edge-b", path=b)
    assert usage_by_tenant_hour("edge-a") == expected_usage(ma.truth, labels)
    assert usage_by_tenant_hour("edge-b") == expected_usage(mb.truth, labels)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch-lines", "0"], "--batch-lines must be at least 1"),
        (["--max-seconds", "0"], "--max-seconds must be positive"),
        (["--edge", "e" * 65], "an edge name has 1 to 64 characters"),
        (["--edge", ""], "an edge name has 1 to 64 characters"),
    ],
)
def test_the_command_refuses_wrong_values_and_changes_nothing(log_path, args, message):
    from django.core.management import CommandError, call_command

    log_path.write_bytes(encode(record(ts=3600.0, label="x")))
    with pytest.raises(CommandError, match=message):
        call_command("ingest_logs", "--path", str(log_path), *args)
    assert not LogFile.objects.exists() and not EdgeIngest.objects.exists()


def test_the_command_reports_what_it_did(labels, log_path):
    from io import StringIO

    from django.core.management import call_command

    maker = LogMaker(list(labels), seed=13)
    log_path.write_bytes(maker.lines(120) + b"junk\n")
    out = StringIO()
    call_command("ingest_logs", "--edge", EDGE, "--path", str(log_path), stdout=out)
    assert "local: ok lines=120 malformed=1" in out.getvalue()
    assert_exact(maker.truth, labels)


def test_a_log_path_that_cannot_be_read_is_reported_not_fatal(log_path):
    log_path.mkdir()  # a directory where the log should be
    report = ingest(log_path)
    assert report.lines == 0 and not LogFile.objects.exists()
    assert "cannot read" in EdgeIngest.objects.get(edge=EDGE).last_error


def test_odd_labels_are_stored_escaped_as_unknown_traffic(log_path):
    odd = ["UPPER", "a\x00b", "dots.and spaces", "ключ", "x" * 63]
    log_path.write_bytes(
        b"".join(encode(record(ts=3600.0 + i, label=x)) for i, x in enumerate(odd))
    )
    report = ingest(log_path)
    assert report.lines == 5 and report.malformed == 0 and report.unknown == 5
    stored = set(UnknownTraffic.objects.values_list("label", flat=True))
    assert stored == {
        "UPPER",
        "a\\x00b",
        "dots.and spaces",
        "ключ",
        "x" * 63,
    }


def test_a_malformed_line_quoting_nul_is_sampled_storably(log_path):
    good = encode(record(ts=3600.0, label="x"))
    log_path.write_bytes(good[:-2] + b',"x\\u0000y":1}\n' + b"\x00\x00\x00\n" + good)
    report = ingest(log_path)
    assert (report.lines, report.malformed) == (1, 2)
    reasons = list(MalformedSample.objects.order_by("id").values_list("reason", "text"))
    assert reasons[0][0] == "Object contains unknown field `x\\x00y`"
    assert reasons[1][1] == "\\x00\\x00\\x00"


# --- the pipeline: the next batch is parsed while the previous one commits ---------------------


def test_batches_parsed_ahead_are_committed_exactly_once(labels, log_path):
    maker = LogMaker(_labels_with_strangers(labels), seed=31)
    log_path.write_bytes(maker.lines(5000, step=2.9))
    report = ingest(log_path, batch_lines=600)
    assert report.lines == 5000 and report.batches == 9
    # Every batch but the first was parsed while the one before it committed.
    assert report.read_ahead_used == report.batches - 1
    assert_exact(maker.truth, labels)


def test_without_read_ahead_the_same_totals(labels, log_path):
    maker = LogMaker(_labels_with_strangers(labels), seed=33)
    log_path.write_bytes(maker.lines(3000, step=2.9))
    report = ingest(log_path, batch_lines=700, read_ahead=False)
    assert report.lines == 3000 and report.batches == 5 and report.read_ahead_used == 0
    assert_exact(maker.truth, labels)


def test_a_batch_parsed_ahead_is_dropped_when_its_position_is_not_the_cursors(labels, log_path):
    """Another worker committed the batch in between (or the cursor changed in any way): the
    parse ahead is not used, the batch is read again from the committed position."""
    from concurrent.futures import ThreadPoolExecutor

    from ingest.batch import batch_step

    maker = LogMaker(list(labels), seed=32)
    log_path.write_bytes(maker.lines(2000))
    EdgeIngest.objects.create(edge=EDGE, path=str(log_path))  # as ingest_edge makes it
    with ThreadPoolExecutor(max_workers=1) as reader:
        first = batch_step(
            edge=EDGE, path=str(log_path), retired={}, batch_lines=300, reader=reader
        )
        assert first.lines == 300 and first.ahead is not None
        other = batch_step(edge=EDGE, path=str(log_path), retired={}, batch_lines=300)
        assert other.lines == 300 and not other.read_ahead_used
        stale = batch_step(
            edge=EDGE, path=str(log_path), retired={}, batch_lines=300, ahead=first.ahead
        )
        assert stale.lines == 300 and not stale.read_ahead_used
        # A parse ahead made with other retirements is not used either.
        ahead = stale.ahead
        assert ahead is None  # no reader given: nothing parsed ahead
        parsed = batch_step(
            edge=EDGE, path=str(log_path), retired={}, batch_lines=50, reader=reader
        )
        changed = batch_step(
            edge=EDGE,
            path=str(log_path),
            retired={"someoldlabel": 0.0},
            batch_lines=50,
            ahead=parsed.ahead,
        )
        assert not changed.read_ahead_used
        used = batch_step(edge=EDGE, path=str(log_path), retired={}, batch_lines=50, reader=reader)
        follows = batch_step(
            edge=EDGE, path=str(log_path), retired={}, batch_lines=50, ahead=used.ahead
        )
        assert follows.read_ahead_used
        assert follows.lines == 50
    assert ingest(log_path).lines == 2000 - 300 * 3 - 50 * 4
    assert_exact(maker.truth, labels)


def test_a_run_leaves_the_objects_before_it_out_of_the_collector_and_then_thaws(
    labels, log_path, monkeypatch
):
    import gc

    from ingest import services

    maker = LogMaker(list(labels), seed=34)
    log_path.write_bytes(maker.lines(300))
    during = []
    real = services._activity_pass

    def spy(**kw):
        during.append(gc.get_freeze_count())
        return real(**kw)

    monkeypatch.setattr(services, "_activity_pass", spy)
    assert gc.get_freeze_count() == 0
    assert ingest(log_path, batch_lines=100).lines == 300
    assert during and min(during) > 0
    assert gc.get_freeze_count() == 0
    # A process that froze its objects itself keeps them frozen.
    gc.freeze()
    try:
        log_path.write_bytes(log_path.read_bytes() + maker.lines(50))
        assert ingest(log_path).lines == 50
        assert gc.get_freeze_count() > 0  # (less the frozen objects freed meanwhile)
    finally:
        gc.unfreeze()
    assert_exact(maker.truth, labels)
