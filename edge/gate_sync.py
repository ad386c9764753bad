"""Gate-map sync: render accelerator.gate.gate_table() into the edge's map, reload nginx.

nginx decides every request from the gate map it last loaded, so the data plane never calls
back into Django: it keeps serving while gunicorn, PostgreSQL, Redis and Celery are down.
gate_sync() writes the map only when its content changed, and only then reloads nginx
gracefully (SIGHUP to the pid in its pid file: running downloads finish on the old workers,
for at most EDGE_WORKER_SHUTDOWN_SECONDS). Reloads are coalesced: at most one per
EDGE_GATE_SYNC_SECONDS (less a tenth for the scheduler's jitter), so a burst of gate changes
(rotations, exhaustions) does not pile up generations of old workers; a change written while a
reload is not yet due is applied by the next sync.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

from accelerator.gate import gate_table
from edge import render
from edge.run_dir import edge_files, write_atomic
from edge.state import edge_state_record
from edge.usage_warning import warning_map, warning_map_write

logger = logging.getLogger(__name__)


def nginx_pid(*, pid_file: Path) -> int | None:
    """The pid of the running nginx master, or None when there is none."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def nginx_reload(*, pid_file: Path) -> bool:
    """Graceful reload (SIGHUP); False when nginx is not running (it reads the map at start)."""
    pid = nginx_pid(pid_file=pid_file)
    if pid is None:
        return False
    os.kill(pid, signal.SIGHUP)
    return True


@dataclass(frozen=True)
class GateSync:
    tenants: int
    changed: bool  # the map file was rewritten
    reloaded: bool  # nginx was signalled to load it
    skipped: tuple[str, ...] = ()
    pending: bool = False  # nginx runs an older map; the next sync reloads it


def gate_sync(*, run_dir: Path | None = None, reload_every: float | None = None) -> GateSync:
    """Render gate_table() into the map file; reload nginx when the map it loaded is not this
    one and its last reload is at least `reload_every` seconds old (EDGE_GATE_SYNC_SECONDS).

    Idempotent. When the database is unreachable gate_table() raises and nothing is
    written, so nginx keeps the last map it had.
    """
    files = edge_files(Path(run_dir or settings.EDGE_RUN_DIR).resolve())
    text, skipped = render.gate_map(gate_table())
    if skipped:
        logger.warning("gate map: left out %d unusable labels: %s", len(skipped), skipped[:5])
    try:
        current = files.gate_map.read_text()
    except FileNotFoundError:
        current = None
    tenants = text.count("\n") - 1
    warnings = warning_map()  # the usage warnings change without the gate
    gate_changed = current != text
    if gate_changed:
        files.run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(files.gate_map, text, mode=0o640)
    changed = warning_map_write(run_dir=files.run_dir, text=warnings) or gate_changed
    reloaded = pending = False
    digest = hashlib.sha256((text + warnings).encode()).hexdigest()
    if _loaded_digest(files.gate_loaded) != digest and nginx_pid(pid_file=files.pid_file):
        every = settings.EDGE_GATE_SYNC_SECONDS if reload_every is None else reload_every
        if _seconds_since(files.gate_loaded) >= 0.9 * every:
            reloaded = nginx_reload(pid_file=files.pid_file)
            if reloaded:
                write_atomic(files.gate_loaded, digest + "\n", mode=0o640)
        pending = not reloaded
    if changed or reloaded:
        logger.info(
            "gate map: %d tenants, written=%s, nginx reloaded=%s", tenants, changed, reloaded
        )
    _record(tenants=tenants, reloaded=reloaded)
    return GateSync(
        tenants=tenants,
        changed=changed,
        reloaded=reloaded,
        skipped=tuple(skipped),
        pending=pending,
    )


def _loaded_digest(path: Path) -> str:
    """The digest of the map nginx was last told to load ("" when unknown)."""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _seconds_since(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


def _record(*, tenants: int, reloaded: bool) -> None:
    """For the operators' metrics; the map is written already, so a failure here is logged."""
    try:
        with transaction.atomic():
            edge_state_record(
                edge=settings.EDGE_NAME,
                tenants=tenants,
                reloaded=reloaded,
                cache_dir=Path(settings.EDGE_CACHE_DIR),
                cache_max_size=settings.EDGE_CACHE_MAX_SIZE,
                verify_listen=settings.EDGE_VERIFY_LISTEN,
            )
    except Exception:
        logger.exception("gate sync: could not record the edge's state")


def gate_sync_loop(*, seconds: float, interval: float, run_dir: Path | None = None) -> int:
    """Run gate_sync every `interval` seconds for `seconds` (0: once). Survives DB outages.

    Returns the number of failed rounds. Runs `seconds` + at most one round (inf: until stopped).
    """
    from django.db import close_old_connections

    failures = 0
    deadline = time.monotonic() + seconds
    while True:
        started = time.monotonic()
        try:
            gate_sync(run_dir=run_dir)
        except Exception:  # the database may be down; keep the last map and retry
            failures += 1
            logger.exception("gate sync failed; nginx keeps its last map")
            close_old_connections()
        if started + interval > deadline:
            return failures
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
