"""`make run` starts whatever ran before it, and a failed step stops cleanly with its own message.

Each test runs scripts/run.sh (what `make run` calls once the locked venv is installed) in a
fresh VAR_DIR on free loopback ports, with the embedded defaults (SQLite, the filesystem
broker, the file cache), then stops it with Ctrl-C as a user would.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e import harness

ROOT = Path(__file__).resolve().parents[2]
PY = str(ROOT / ".venv" / "bin" / "python")
pytestmark = pytest.mark.e2e


def _env(var: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
    }
    env.update(
        VAR_DIR=str(var),
        DJANGO_DEBUG="true",
        WEB_LISTEN=f"127.0.0.1:{harness.free_port()}",
        EDGE_LISTEN=f"127.0.0.1:{harness.free_port()}",
        EDGE_REGISTRY_LISTEN=f"127.0.0.1:{harness.free_port()}",
        EDGE_FETCH_LISTEN=f"127.0.0.1:{harness.free_port()}",
        EDGE_TOKEN_LISTEN=f"127.0.0.1:{harness.free_port()}",
        # Not the default 8483: another run on this machine may hold it.
        EDGE_HEALTH_LISTEN=f"127.0.0.1:{harness.free_port()}",
        EDGE_VERIFY_LISTEN=f"127.0.0.1:{harness.free_port()}",
    )
    return env


def _port(env: dict[str, str], key: str) -> int:
    return int(env[key].rsplit(":", 1)[1])


def _start(env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            ["bash", "scripts/run.sh"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _wait_http(port: int, path: str, *, host: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"run.sh exited early:\n{log.read_text()[-4000:]}"
        try:
            return harness.request(port, "GET", path, host=host, timeout=5)
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing answered on {port} within 120 s:\n{log.read_text()[-4000:]}")


def _sign_up(port: int, email: str) -> None:
    session = requests.Session()
    url = f"http://127.0.0.1:{port}/accounts/signup/"
    form = session.get(url, timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    done = session.post(
        url,
        data={
            "csrfmiddlewaretoken": token,
            "email": email,
            "password1": "a long Pass-phrase 42",
            "password2": "a long Pass-phrase 42",
        },
        headers={"Referer": url},
        timeout=30,
    )
    assert done.status_code == 200 and "/accounts/confirm-email/" in done.url, done.text[-2000:]


def _ctrl_c(proc: subprocess.Popen) -> int:
    """Ctrl-C in the terminal: SIGINT to run.sh's process group, then its exit status."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.wait(120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists() and _not_zombie(pid)]


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for(predicate, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, log.read_text()[-4000:]
        time.sleep(0.1)


def _end_leftovers(var: Path) -> None:
    """Teardown: end what a failed test's runs left, by the process groups they recorded."""
    if (var / "run.pids").exists():
        for pid in _alive(_recorded_pids(var)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def _recorded_pids(var: Path) -> list[int]:
    lines = (var / "run.pids").read_text().splitlines()
    return [int(line.split()[0]) for line in lines if line.strip()]


@pytest.fixture
def var() -> Iterator[Path]:
    """A fresh VAR_DIR under a directory nginx's workers can reach; whatever a failed test's
    runs left is ended afterwards."""
    path = harness.worker_readable_dir("make-run-") / "var"
    yield path
    _end_leftovers(path)


def test_make_run_after_a_manage_command_serves_console_and_edge_and_mail(tmp_path, var):
    env = _env(var)
    # A command before the first run: Django's file cache creates var/ with mode 0700.
    subprocess.run([PY, "manage.py", "check"], cwd=ROOT, env=env, check=True, timeout=120)
    assert var.stat().st_mode & 0o777 == 0o700

    log = tmp_path / "run.log"
    proc = _start(env, log)
    try:
        console = _wait_http(_port(env, "WEB_LISTEN"), "/", host="127.0.0.1", proc=proc, log=log)
        assert console.status == 200
        edge = _wait_http(
            _port(env, "EDGE_LISTEN"), "/v2/", host="nosuchlabel00.m.localhost", proc=proc, log=log
        )
        # The gate answers: an unknown label is a registry error, not a connection failure.
        assert edge.status == 404
        assert edge.json()["errors"][0]["code"]
        # The development mailbox: the verification email of a sign-up lands in var/mail.
        _sign_up(_port(env, "WEB_LISTEN"), "newcomer@example.com")
        mails = [p.read_text() for p in (var / "mail").iterdir()]
        assert any(
            "newcomer@example.com" in m and "/accounts/confirm-email/" in m for m in mails
        ), mails
        pids = _recorded_pids(var)
        assert len(pids) == 7  # web, worker, beat, registry, token helper, digest check, nginx
    finally:
        status = _ctrl_c(proc)
    assert status == 0, log.read_text()[-4000:]
    assert "unbound variable" not in log.read_text()
    _wait_for(lambda: not _alive(pids), log)
    assert not (var / "run.pids").exists()


def test_make_run_ends_what_an_earlier_killed_run_left(tmp_path, var):
    env = _env(var)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = _start(env, first_log)
    _wait_http(_port(env, "WEB_LISTEN"), "/", host="127.0.0.1", proc=first, log=first_log)
    left = _recorded_pids(var)
    # The terminal is gone: run.sh dies without its trap; its children stay behind.
    os.kill(first.pid, signal.SIGKILL)
    first.wait(30)
    assert _alive(left)

    second = _start(env, second_log)
    try:
        _wait_for(lambda: "left by an earlier run" in second_log.read_text(), second_log)
        _wait_for(lambda: not _alive(left), second_log)
        # Only the second run's gunicorn can answer now.
        console = _wait_http(
            _port(env, "WEB_LISTEN"), "/", host="127.0.0.1", proc=second, log=second_log
        )
        assert console.status == 200
        assert not set(_recorded_pids(var)) & set(left)
    finally:
        status = _ctrl_c(second)
    assert status == 0, second_log.read_text()[-4000:]


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("EDGE_LISTEN", "not-an-address", "EDGE_LISTEN"),
        ("MIRROR_DOMAIN", "bad domain!", "MIRROR_DOMAIN"),
    ],
)
def test_make_run_with_a_bad_setting_stops_with_its_own_message(tmp_path, setting, value, message):
    base = harness.worker_readable_dir("make-run-")
    env = {**_env(base / "var"), setting: value}
    done = subprocess.run(
        ["bash", "scripts/run.sh"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert message in output
    assert "make run: the edge's configuration is not valid" in output
    assert "unbound variable" not in output
    assert "Traceback" not in output
    assert not (base / "var" / "run.pids").exists()
