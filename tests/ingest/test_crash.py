"""Real `manage.py ingest_logs` processes: killed at random points, and two at once."""

from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest

from ingest.models import EdgeIngest, LogFile
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


def test_sigkill_at_random_points_then_run_to_the_end(django_user_model, log_path):
    labels = make_tenants(django_user_model, 500)
    truth = _write_log(log_path, labels, 1_000_000, seed=21)
    data_size = log_path.stat().st_size
    rng = random.Random(5)
    env = db_env()
    kills = positions = 0
    seen: list[int] = []
    deadline = time.monotonic() + 45
    while kills < 10 and time.monotonic() < deadline:
        before = _position()
        proc = subprocess.Popen(
            ingest_command(log_path, "--batch-lines", "20000", "--no-enforce"),
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            # Wait until this process has committed a batch, then kill it a random moment
            # later: mid-read, mid-parse, mid-commit or between batches.
            while _position() == before and proc.poll() is None:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.35))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            proc.stderr.close()
        assert proc.returncode in (-signal.SIGKILL, 0)
        kills += proc.returncode == -signal.SIGKILL
        pos = _position()
        seen.append(pos)
        assert pos == data_size or log_path.read_bytes()[pos - 1 : pos] == b"\n"
        if pos == data_size:
            break
        positions += pos > before
    print("kills", kills, "positions", seen)
    assert kills >= 5, f"only {kills} kills landed"
    assert seen == sorted(seen) and seen[-1] < data_size, "killed too late to mean anything"
    done = run_ingest_command(log_path, "--no-enforce")
    assert "ok" in done.stdout
    assert _position() == data_size
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
