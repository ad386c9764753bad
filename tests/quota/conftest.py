"""Fixtures of the ledger tests: a tenant, usage written through the ledger, eager tasks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

GB = 10**9


def at(text: str) -> datetime:
    """'2026-03-31 23:00' -> an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def eager_tasks():
    """Run Celery tasks in-process (after commit, as in production)."""
    from config.celery import app

    old = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = old


@pytest.fixture
def tenant(owner):
    from accelerator.services import tenant_start

    return tenant_start(user=owner)


@pytest.fixture
def other_tenant(stranger):
    from accelerator.services import tenant_start

    return tenant_start(user=stranger)


def use(tenant, when: str | datetime, nbytes: int, edge: str = "e1", requests: int = 1) -> None:
    """Usage written through the ledger's write path."""
    from quota.ledger import UsageDelta, floor_hour, usage_apply

    hour = floor_hour(at(when) if isinstance(when, str) else when)
    tenant_id = tenant if isinstance(tenant, int) else tenant.pk
    usage_apply(deltas=[UsageDelta(tenant_id, edge, hour, nbytes, requests)])
