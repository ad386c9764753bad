"""The tenant gate decision: the one place that says what the edge does with a label.

The edge renders this table into its own configuration, so it keeps deciding from the last
table it got while the control plane is down. This module also owns when a tenant is "low"
(near the end of its allowance, throttled) and the overspend bound those limits give.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.utils import timezone

from accelerator.models import Tenant

# nginx writes the access log at least this often (flush= in deploy/nginx/edge.conf.template).
ACCESS_LOG_FLUSH_SECONDS = 2
# Slack for one ingestion run, the enforcement after it and nginx's graceful reload.
PROCESSING_SECONDS = 1


class GateState(StrEnum):
    ACTIVE = "active"  # everything served
    LOW = "low"  # everything served, throttled: little of the allowance is left
    SUSPENDED = "suspended"  # everything refused, 403 DENIED
    EXHAUSTED = "exhausted"  # manifests refused (429); blobs of a pull under way, throttled
    EXHAUSTED_ALL = "exhausted_all"  # past the grace window: blobs refused too


def gate_state(
    *,
    state: str,
    exhausted_at: datetime | None,
    now: datetime,
    grace: timedelta,
    low_at: datetime | None = None,
) -> GateState:
    if state == Tenant.State.SUSPENDED:
        return GateState.SUSPENDED
    if exhausted_at is not None:
        if now - exhausted_at < grace:
            return GateState.EXHAUSTED
        return GateState.EXHAUSTED_ALL
    if low_at is not None:
        return GateState.LOW
    return GateState.ACTIVE


def gate_table(*, now: datetime | None = None) -> dict[str, GateState]:
    """Every current label with its gate state. Unknown and retired labels are absent, and so
    are the labels of deactivated accounts (a deletion in its grace period): the edge answers
    them as unknown, and an undo brings the same label back."""
    now = now or timezone.now()
    grace = timedelta(seconds=settings.GATE_BLOB_GRACE_SECONDS)
    rows = Tenant.objects.filter(user__is_active=True).values_list(
        "label", "state", "exhausted_at", "low_at"
    )
    return {
        label: gate_state(
            state=state, exhausted_at=exhausted_at, now=now, grace=grace, low_at=low_at
        )
        for label, state, exhausted_at, low_at in rows
    }


def is_low(*, remaining: int, allowance: int) -> bool:
    """Little is left: at most GATE_LOW_REMAINING_PERCENT of the month's allowance."""
    return remaining * 100 <= allowance * settings.GATE_LOW_REMAINING_PERCENT


def meter_lag_seconds() -> int:
    """L: from a request's end to the gate acting on its bytes (log flush, ingest, sync)."""
    return (
        ACCESS_LOG_FLUSH_SECONDS
        + settings.INGEST_INTERVAL_SECONDS
        + settings.EDGE_GATE_SYNC_SECONDS
        + PROCESSING_SECONDS
    )


def _unmetered(
    *, connections: int, rate: int, requests: int, burst: int, seconds: int, largest_blob: int
) -> int:
    """Bytes one tenant can be served in `seconds` under one set of limits, plus the blobs
    in flight at either end of that window.

    nginx's limit_rate counts whole seconds from the request's start plus one, so a request
    may be up to two seconds' worth ahead of its pace: each request started in the window (at
    most requests/s × seconds + burst) adds 2 × rate bytes.
    """
    paced = rate * (connections * seconds + 2 * (requests * seconds + burst))
    return paced + 2 * connections * largest_blob


def overspend_bound(*, largest_blob: int) -> int:
    """The most one tenant can be served beyond its allowance in a month (bytes).

    README (quota section) states this formula; tests/accelerator/test_overspend_bound.py
    checks the two agree. Active limits apply until the gate learns "low" (or exhausted): at
    most L seconds of them are unmetered when the meter marks the tenant exhausted. Low limits
    apply from then on, for L + the blob grace, until the gate refuses everything.
    """
    lag = meter_lag_seconds()
    active = _unmetered(
        connections=settings.EDGE_TENANT_CONNECTIONS,
        rate=settings.EDGE_TENANT_RATE,
        requests=settings.EDGE_TENANT_REQUEST_RATE,
        burst=settings.EDGE_TENANT_REQUEST_BURST,
        seconds=lag,
        largest_blob=largest_blob,
    )
    low = _unmetered(
        connections=settings.EDGE_LOW_CONNECTIONS,
        rate=settings.EDGE_LOW_RATE,
        requests=settings.EDGE_LOW_REQUEST_RATE,
        burst=settings.EDGE_LOW_REQUEST_BURST,
        seconds=lag + settings.GATE_BLOB_GRACE_SECONDS,
        largest_blob=largest_blob,
    )
    return active + low
