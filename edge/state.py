"""The edge's own state as the control plane sees it (EdgeState): written after each gate sync
on the edge's machine, where the blob cache directory and the digest check are."""

from __future__ import annotations

import http.client
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import msgspec
from django.db.models import F
from django.utils import timezone

from edge.blob_verify import COUNTERS, STATS_PATH, host_port
from edge.models import EdgeState

# Walking the cache directory costs a stat per entry: at most this often.
CACHE_MEASURE_SECONDS = 60
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def size_bytes(size: str) -> int:
    """nginx's size syntax (10g, 512m, 4096) in bytes."""
    size = size.strip().lower()
    unit = size[-1:] if size[-1:] in _UNITS and not size[-1:].isdigit() else ""
    return int(size[: len(size) - len(unit)]) * _UNITS[unit]


def dir_bytes(path: Path) -> int:
    """Bytes of the files under path (0 when it does not exist)."""
    total = 0
    stack = [str(path)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
            except OSError:
                continue  # evicted while we looked
    return total


# The digest check's answer is small; anything longer is not its answer.
STATS_MAX_BYTES = 16 * 1024
STATS_TIMEOUT = 2.0
_Count = Annotated[int, msgspec.Meta(ge=0, le=2**62)]


class VerifyStats(msgspec.Struct, forbid_unknown_fields=True):
    """edge.blob_verify's /@stats, checked: a process on its address that answers something
    else is reported, never counted."""

    started: Annotated[float, msgspec.Meta(ge=0)]
    counts: dict[Annotated[str, msgspec.Meta(max_length=32)], _Count]
    memory_bytes: _Count
    fills_in_flight: _Count


class StatsUnreadable(Exception):
    pass


def verify_stats_read(listen: str) -> VerifyStats:
    """The digest check's counters, from its loopback address. Raises StatsUnreadable."""
    try:
        conn = http.client.HTTPConnection(*host_port(listen), timeout=STATS_TIMEOUT)
        try:
            conn.request("GET", STATS_PATH)
            resp = conn.getresponse()
            body = resp.read(STATS_MAX_BYTES + 1)
        finally:
            conn.close()
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise StatsUnreadable(f"no answer from {listen}: {exc}") from None
    if resp.status != 200:
        raise StatsUnreadable(f"{listen} answered {resp.status}")
    if len(body) > STATS_MAX_BYTES:
        raise StatsUnreadable(f"{listen} answered more than {STATS_MAX_BYTES} bytes")
    try:
        return msgspec.json.decode(body, type=VerifyStats)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise StatsUnreadable(f"{listen} answered no digest-check stats: {exc}") from None


def fill_totals(totals: dict, last: dict, stats: VerifyStats) -> dict[str, int]:
    """The counters added up across the digest check's restarts: what this reading counted
    since the last one (a reading of a new process, or of counters that went back, began at
    0: all of it is new). Only COUNTERS are kept."""
    same = last.get("started") == stats.started
    before = last.get("counts", {}) if same else {}
    out = {}
    for name in COUNTERS:
        now = stats.counts.get(name, 0)
        was = before.get(name, 0)
        new = now - was if now >= was else now
        out[name] = int(totals.get(name, 0)) + new
    return out


def edge_state_record(
    *,
    edge: str,
    tenants: int,
    reloaded: bool,
    cache_dir: Path,
    cache_max_size: str,
    verify_listen: str,
) -> None:
    """Note a gate sync and the digest check's counters; measure the cache when the last
    measure is old enough. The caller's transaction holds the row (a concurrent sync on the
    same edge waits, so no count is added twice)."""
    now = timezone.now()
    state, _ = EdgeState.objects.select_for_update().get_or_create(edge=edge)
    updates: dict = {"gate_synced_at": now, "gate_tenants": tenants}
    try:
        stats = verify_stats_read(verify_listen)
    except StatsUnreadable as exc:
        updates["verify_error"] = str(exc)[:200]
    else:
        updates["fill_counts"] = fill_totals(state.fill_counts, state.fill_reading, stats)
        updates["fill_reading"] = {"started": stats.started, "counts": dict(stats.counts)}
        updates["fill_memory_bytes"] = stats.memory_bytes
        updates["verify_read_at"] = now
        updates["verify_error"] = ""
    if reloaded:
        updates["gate_reloads_total"] = F("gate_reloads_total") + 1
    due = state.cache_measured_at is None or now - state.cache_measured_at >= timedelta(
        seconds=CACHE_MEASURE_SECONDS
    )
    if due:
        updates["cache_bytes"] = dir_bytes(cache_dir)
        updates["cache_max_bytes"] = size_bytes(cache_max_size)
        updates["cache_measured_at"] = now
    EdgeState.objects.filter(pk=state.pk).update(**updates)
