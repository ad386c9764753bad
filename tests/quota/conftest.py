"""Fixtures of the ledger tests: a tenant, usage written through the ledger, eager tasks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from quota.units import GB  # noqa: F401 - the ledger tests import it from here


def at(text: str) -> datetime:
    """'2026-03-31 23:00' -> an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


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
    from quota.periods import floor_hour
    from quota.usage import UsageDelta, usage_apply

    hour = floor_hour(at(when) if isinstance(when, str) else when)
    tenant_id = tenant if isinstance(tenant, int) else tenant.pk
    usage_apply(deltas=[UsageDelta(tenant_id, edge, hour, nbytes, requests)])


def _child(fn, args, barrier, results):
    from django.db import connections

    # A connection object inherited through fork shares its socket with the parent (after a
    # browser test, the parent's may still be open in another context): forget it unclosed,
    # since closing it would end the parent's session too. The child opens its own.
    for conn in connections.all(initialized_only=True):
        conn.connection = None
    try:
        barrier.wait(timeout=30)
        results.put(("ok", fn(*args)))
    except BaseException as exc:  # reported to the parent, which fails the test
        results.put(("error", repr(exc)))
    finally:
        connections.close_all()


def in_processes(fn, arg_lists, timeout: float = 60.0) -> list:
    """Run fn(*args) in one forked process per args, started together; return the results.

    Each process opens its own database connection (the parent's are closed before forking).
    Every process is joined, or killed on timeout, before this returns.
    """
    import multiprocessing

    from django.db import connections

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(arg_lists))
    results = ctx.Queue()
    connections.close_all()
    procs = [ctx.Process(target=_child, args=(fn, args, barrier, results)) for args in arg_lists]
    for p in procs:
        p.start()
    out = []
    try:
        for _ in procs:
            out.append(results.get(timeout=timeout))
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
    errors = [value for status, value in out if status == "error"]
    assert not errors, errors
    return [value for _status, value in out]


def _eager() -> None:
    from config.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    """The users of these tests log in by force_login; hashing cost only slows the suite."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
