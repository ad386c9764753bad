"""quota.tasks.usage_settle: the control plane settles usage an edge ingested
(ACCELERATOR_ROLE=edge)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from accelerator.gate import GateState, gate_table
from accelerator.services import tenant_start
from quota.tasks import usage_settle
from quota.usage import UsageDelta, usage_apply

pytestmark = pytest.mark.django_db


def test_settle_enforces_what_an_edge_ingested(owner, settings):
    tenant = tenant_start(user=owner)
    assert gate_table()[tenant.label] == GateState.ACTIVE
    settings.QUOTA_MONTHLY_BYTES = 1000
    _charge(tenant, 5000)
    assert usage_settle([tenant.pk, tenant.pk, str(tenant.pk)]) == {"tenants": 1}
    assert gate_table()[tenant.label] in {GateState.EXHAUSTED, GateState.EXHAUSTED_ALL}
    assert usage_settle([tenant.pk]) == {"tenants": 1}  # idempotent


@pytest.mark.parametrize("hostile", [["1; DROP TABLE x"], [None], [{"id": 1}], ["1e9999"]])
def test_settle_refuses_hostile_ids(hostile, owner):
    tenant = tenant_start(user=owner)
    with pytest.raises((ValueError, TypeError)):
        usage_settle(hostile)
    assert gate_table()[tenant.label] == GateState.ACTIVE


def test_settle_of_unknown_tenants_changes_nothing(owner):
    tenant = tenant_start(user=owner)
    assert usage_settle([10**12, -1]) == {"tenants": 2}
    assert gate_table()[tenant.label] == GateState.ACTIVE


def _charge(tenant, amount: int) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    usage_apply(
        deltas=[UsageDelta(tenant_id=tenant.pk, edge="local", hour=hour, bytes=amount, requests=1)]
    )
