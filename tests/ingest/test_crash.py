"""Real `manage.py ingest_logs` processes: killed at chosen points, and two at once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

import pytest
from django.db import transaction
from django.db.models import Sum

from ingest.models import EdgeIngest, LogFile, UnknownTraffic
from tests.ingest.conftest import (
    EDGE,
    ROOT,
    assert_exact,
    db_env,
    ingest_command,
    make_tenants,
    run_ingest_command,
)
from tests.ingest.logs import Truth, write_log

pytestmark = pytest.mark.django_db(transaction=True)


def _write_log(path, labels, n: int, seed: int) -> Truth:
    return write_log(path, [*labels, "nosuchlabel0", ""], n, seed=seed)


def _position() -> int:
    row = LogFile.objects.filter(edge=EDGE, state=LogFile.State.CURRENT).first()
    return row.position if row else 0


def _committed_requests() -> int:
    """Requests in the ledger and in unknown traffic: every line committed, counted once."""
    from quota.models import UsageBucket

    charged = UsageBucket.objects.filter(edge=EDGE).aggregate(n=Sum("requests"))["n"] or 0
    unknown = UnknownTraffic.objects.filter(edge=EDGE).aggregate(n=Sum("requests"))["n"] or 0
    return charged + unknown


def _wait_stopped(proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait for the process to stop itself at its pause point (INGEST_TEST_PAUSE)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
        if pid == 0:
            time.sleep(0.01)
            continue
        if os.WIFSTOPPED(status):
            return
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here
        out, err = proc.communicate()
        raise AssertionError(f"exited ({proc.returncode}) before its pause point: {out} {err}")
    raise AssertionError("never reached its pause point")


def _wait_unlocked() -> None:
    """A killed process's backend lets go of the edge's row lock when it sees the socket
    close: wait for that, so that the next process does not find the edge busy."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with transaction.atomic():
            if EdgeIngest.objects.select_for_update(skip_locked=True).filter(edge=EDGE).exists():
                return
        time.sleep(0.01)
    raise AssertionError("the killed process's transaction still holds the edge")


def _killed_at(pause: str, log_path, *args: str) -> None:
    """Run `manage.py ingest_logs` until it stops itself at ``pause`` (INGEST_TEST_PAUSE,
    ingest.pause), SIGKILL it there, and wait for its row lock to go."""
    proc = subprocess.Popen(
        ingest_command(log_path, *args),
        env={**db_env(), "INGEST_TEST_PAUSE": pause},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_stopped(proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    _wait_unlocked()


# Where each process is killed (INGEST_TEST_PAUSE, see ingest.pause) and how many of its
# batches that leaves committed: "read" (a batch read, nothing written yet) and "commit" (all
# written, before COMMIT) lose the batch under way, "committed" keeps it.
KILLS = [
    ("read", 1, 0),
    ("commit", 1, 0),
    ("committed", 1, 1),
    ("commit", 3, 2),
    ("read", 2, 1),
    ("committed", 2, 2),
    ("commit", 2, 1),
    ("read", 4, 3),
    ("committed", 3, 3),
    ("commit", 1, 0),
]
BATCH = 20_000


def test_sigkill_at_chosen_points_then_run_to_the_end(django_user_model, log_path):
    labels = make_tenants(django_user_model, 500)
    truth = _write_log(log_path, labels, 1_000_000, seed=21)
    data = log_path.read_bytes()
    committed = 0  # batches
    for point, n, keeps in KILLS:
        before = _position()
        _killed_at(f"{point}:{n}", log_path, "--batch-lines", str(BATCH), "--no-enforce")
        committed += keeps
        # The position, the edge's totals and the usage moved together, batch by batch.
        pos = _position()
        assert pos >= before
        assert data.count(b"\n", 0, pos) == committed * BATCH, (point, n)
        assert EdgeIngest.objects.get(edge=EDGE).lines_total == committed * BATCH
        assert _committed_requests() == committed * BATCH
    assert 0 < _position() < len(data)
    done = run_ingest_command(log_path, "--batch-lines", str(BATCH), "--no-enforce")
    assert "ok" in done.stdout
    # The rest went through the pipeline: each batch but the first was parsed while the one
    # before it committed, all of them in parts by parse workers (the log is far behind), and
    # the kills above hit batches parsed that way too.
    rest = (1_000_000 - committed * BATCH) // BATCH
    assert f"batches={rest} read_ahead={rest - 1} in_parts={rest} " in done.stdout, done.stdout
    assert _position() == len(data)
    assert_exact(truth, labels)
    assert EdgeIngest.objects.get(edge=EDGE).lines_total == 1_000_000
    # And once more for good measure: nothing changes.
    run_ingest_command(log_path, "--no-enforce")
    assert_exact(truth, labels)


def test_two_workers_started_on_one_file_at_once(django_user_model, log_path):
    labels = make_tenants(django_user_model, 50)
    truth = _write_log(log_path, labels, 200_000, seed=22)
    env = db_env()
    procs = [
        subprocess.Popen(
            ingest_command(log_path, "--batch-lines", "20000"),
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(out)
    print(outs)
    lines = [int(o.split("lines=")[1].split()[0]) for o in outs]
    # Every line was read by exactly one of them (never both), and totals are exact.
    assert sum(lines) == 200_000, outs
    assert_exact(truth, labels)
    assert EdgeIngest.objects.get(edge=EDGE).lines_total == 200_000


def test_workers_contending_while_nginx_appends_partial_lines(django_user_model, log_path):
    """Three threads (each with its own database connection) ingest the same log in small
    batches over and over while a writer appends lines in uneven pieces: every line is
    counted once, and the lock was really contended."""
    import threading

    from django.db import connection

    from ingest.services import ingest_edge
    from tests.ingest.logs import LogMaker

    labels = make_tenants(django_user_model, 20)
    maker = LogMaker([*labels, "nosuchlabel0"], seed=23)
    data = maker.lines(20_000, step=0.05)
    log_path.write_bytes(b"")
    writing = threading.Event()
    writing.set()
    stats = {"busy": 0, "lines": [0, 0, 0]}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer() -> None:
        rng = random.Random(3)
        pos = 0
        with log_path.open("ab") as f:
            while pos < len(data):
                n = rng.randrange(1, 60_000)
                f.write(data[pos : pos + n])  # cuts lines anywhere
                f.flush()
                pos += n
                time.sleep(0.002)
        writing.clear()

    def worker(i: int) -> None:
        try:
            while True:
                still_writing = writing.is_set()
                r = ingest_edge(edge=EDGE, path=log_path, batch_lines=700, enforce=False)
                with lock:
                    stats["lines"][i] += r.lines
                    stats["busy"] += r.busy
                if not still_writing and not r.busy and r.caught_up:
                    return
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=worker, args=(i,)) for i in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    print("lines per worker", stats["lines"], "busy", stats["busy"])
    assert sum(stats["lines"]) == 20_000
    assert stats["busy"] > 0
    assert sum(1 for n in stats["lines"] if n) >= 2  # they took turns
    assert_exact(maker.truth, labels)


def test_sigkill_in_the_status_pages_pass_loses_and_doubles_nothing(django_user_model, log_path):
    """Killed with a step's activity written and not committed: nothing of it stays, the meter's
    work stays, and the next run writes the step once."""
    from accelerator.models import TenantActivity
    from ingest import parser
    from ingest.activity import activity_add

    labels = make_tenants(django_user_model, 30)
    _write_log(log_path, labels, 50_000, seed=24)
    data = log_path.read_bytes()
    _killed_at("activity:1", log_path, "--no-enforce")
    row = LogFile.objects.get(edge=EDGE)
    assert row.position == len(data) and row.activity_position == 0  # the meter's work stays
    assert not TenantActivity.objects.exists()
    done = run_ingest_command(log_path, "--no-enforce")
    assert "lines=0 " in done.stdout and "activity_lines=50000" in done.stdout, done.stdout
    row.refresh_from_db()
    assert row.activity_position == len(data)
    got = {
        a.tenant_id: (a.first_seen_at, a.last_seen_at, a.recent_pulls, a.last_refusal_at)
        for a in TenantActivity.objects.all()
    }
    # What one pass over the log gives, written once into empty rows.
    TenantActivity.objects.all().delete()
    with log_path.open("rb") as f, transaction.atomic():
        seen = parser.read_batch(f, start=0, max_lines=1 << 62, max_bytes=1 << 62, activity=True)
        activity_add(activity=seen.activity)
    want = {
        a.tenant_id: (a.first_seen_at, a.last_seen_at, a.recent_pulls, a.last_refusal_at)
        for a in TenantActivity.objects.all()
    }
    assert got == want and len(got) == 30
    assert all(pulls for _f, _l, pulls, _r in got.values())  # bytes a double count would show
