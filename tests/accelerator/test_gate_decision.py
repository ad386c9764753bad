from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from accelerator import services
from accelerator.gate import GateState, gate_state, gate_table, is_low

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
GRACE = timedelta(seconds=60)


@pytest.mark.parametrize(
    "state, exhausted_at, expected",
    [
        ("active", None, GateState.ACTIVE),
        ("suspended", None, GateState.SUSPENDED),
        ("suspended", NOW, GateState.SUSPENDED),
        ("active", NOW - timedelta(seconds=10), GateState.EXHAUSTED),
        ("active", NOW - timedelta(seconds=60), GateState.EXHAUSTED_ALL),
    ],
)
def test_gate_state(state, exhausted_at, expected):
    assert gate_state(state=state, exhausted_at=exhausted_at, now=NOW, grace=GRACE) == expected


@pytest.mark.parametrize(
    "state, exhausted_at, expected",
    [
        ("active", None, GateState.LOW),
        ("suspended", None, GateState.SUSPENDED),
        ("active", NOW - timedelta(seconds=10), GateState.EXHAUSTED),  # exhausted wins
        ("active", NOW - timedelta(seconds=60), GateState.EXHAUSTED_ALL),
    ],
)
def test_gate_state_low(state, exhausted_at, expected):
    low_at = NOW - timedelta(minutes=5)
    got = gate_state(state=state, exhausted_at=exhausted_at, now=NOW, grace=GRACE, low_at=low_at)
    assert got == expected


@pytest.mark.parametrize(
    "remaining, allowance, percent, expected",
    [
        (11, 100, 10, False),
        (10, 100, 10, True),
        (0, 100, 10, True),
        (0, 0, 10, True),
        (10, 100, 0, False),
        (0, 100, 0, True),
    ],
)
def test_is_low(settings, remaining, allowance, percent, expected):
    settings.GATE_LOW_REMAINING_PERCENT = percent
    assert is_low(remaining=remaining, allowance=allowance) is expected


@pytest.mark.django_db
def test_low_is_reachable_through_services(owner):
    tenant = services.tenant_start(user=owner)
    assert services.tenant_mark_low(tenant_id=tenant.pk, at=NOW)
    assert not services.tenant_mark_low(tenant_id=tenant.pk)  # keeps the first time
    assert gate_table(now=NOW)[tenant.label] == GateState.LOW
    assert services.tenant_mark_exhausted(tenant_id=tenant.pk, at=NOW)
    assert gate_table(now=NOW)[tenant.label] == GateState.EXHAUSTED
    assert services.tenant_clear_exhausted(tenant_id=tenant.pk)
    assert services.tenant_clear_low(tenant_id=tenant.pk)
    assert not services.tenant_clear_low(tenant_id=tenant.pk)
    assert gate_table()[tenant.label] == GateState.ACTIVE


@pytest.mark.django_db
def test_exhaustion_is_reachable_through_services(owner):
    tenant = services.tenant_start(user=owner)
    assert services.tenant_mark_exhausted(tenant_id=tenant.pk, at=NOW)
    assert not services.tenant_mark_exhausted(tenant_id=tenant.pk)  # keeps the first time
    assert gate_table(now=NOW + timedelta(seconds=1))[tenant.label] == GateState.EXHAUSTED
    assert gate_table(now=NOW + timedelta(minutes=5))[tenant.label] == GateState.EXHAUSTED_ALL
    assert services.tenant_clear_exhausted(tenant_id=tenant.pk)
    assert gate_table()[tenant.label] == GateState.ACTIVE
