"""The edge's own state as the control plane sees it (EdgeState): written after each gate sync
on the edge's machine, where the blob cache directory is."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from django.db.models import F
from django.utils import timezone

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


def edge_state_record(
    *, edge: str, tenants: int, reloaded: bool, cache_dir: Path, cache_max_size: str
) -> None:
    """Note a gate sync; measure the cache when the last measure is old enough."""
    now = timezone.now()
    state, _ = EdgeState.objects.get_or_create(edge=edge)
    updates: dict = {"gate_synced_at": now, "gate_tenants": tenants}
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
