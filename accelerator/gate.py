"""The tenant gate decision: the one place that says what the edge does with a label.

The edge renders this table into its own configuration, so it keeps deciding from the last
table it got while the control plane is down.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.utils import timezone

from accelerator.models import Tenant


class GateState(StrEnum):
    ACTIVE = "active"  # everything served
    SUSPENDED = "suspended"  # everything refused, 403 DENIED
    EXHAUSTED = "exhausted"  # manifests refused (429); blobs of a pull under way still served
    EXHAUSTED_ALL = "exhausted_all"  # past the grace window: blobs refused too


def gate_state(
    *, state: str, exhausted_at: datetime | None, now: datetime, grace: timedelta
) -> GateState:
    if state == Tenant.State.SUSPENDED:
        return GateState.SUSPENDED
    if exhausted_at is None:
        return GateState.ACTIVE
    if now - exhausted_at < grace:
        return GateState.EXHAUSTED
    return GateState.EXHAUSTED_ALL


def gate_table(*, now: datetime | None = None) -> dict[str, GateState]:
    """Every current label with its gate state. Unknown and retired labels are absent."""
    now = now or timezone.now()
    grace = timedelta(seconds=settings.GATE_BLOB_GRACE_SECONDS)
    rows = Tenant.objects.values_list("label", "state", "exhausted_at")
    return {
        label: gate_state(state=state, exhausted_at=exhausted_at, now=now, grace=grace)
        for label, state, exhausted_at in rows
    }
