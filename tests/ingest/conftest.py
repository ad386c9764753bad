"""Fixtures of the ingestion tests: tenants with labels, a log directory, totals to compare."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.ingest.logs import HOUR, Truth

ROOT = Path(__file__).resolve().parents[2]
EDGE = "local"


def make_tenants(django_user_model, n: int, prefix: str = "t") -> dict[str, int]:
    """n tenants with fresh labels (bulk: no password hashing); returns {label: tenant_id}."""
    from accelerator.labels import new_label
    from accelerator.models import Tenant

    users = django_user_model.objects.bulk_create(
        [django_user_model(email=f"{prefix}{i}@example.com", password="!") for i in range(n)]
    )
    tenants = Tenant.objects.bulk_create([Tenant(user=u, label=new_label()) for u in users])
    return {t.label: t.pk for t in tenants}


@pytest.fixture
def log_path(tmp_path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    return d / "access.log"


def usage_by_tenant_hour(edge: str = EDGE) -> dict[tuple[int, int], list[int]]:
    from quota.models import UsageBucket

    out = {}
    for tenant_id, hour, nbytes, requests, hits in UsageBucket.objects.filter(
        edge=edge
    ).values_list("tenant_id", "hour", "bytes", "requests", "cache_hits"):
        out[(tenant_id, int(hour.timestamp()) // HOUR)] = [nbytes, requests, hits]
    return out


def unknown_by_label(edge: str = EDGE) -> dict[str, list[int]]:
    from ingest.models import UnknownTraffic

    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for label, requests, nbytes in UnknownTraffic.objects.filter(edge=edge).values_list(
        "label", "requests", "bytes"
    ):
        out[label][0] += requests
        out[label][1] += nbytes
    return dict(out)


def expected_usage(truth: Truth, labels: dict[str, int]) -> dict[tuple[int, int], list[int]]:
    out: dict[tuple[int, int], list[int]] = {}
    for (label, hour), acc in truth.buckets.items():
        if label in labels:
            cur = out.setdefault((labels[label], hour), [0, 0, 0])
            for i in range(3):
                cur[i] += acc[i]
    return out


def expected_unknown(truth: Truth, labels: dict[str, int]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (label, _hour), acc in truth.buckets.items():
        if label not in labels:
            out[label][0] += acc[1]
            out[label][1] += acc[0]
    return dict(out)


def assert_exact(truth: Truth, labels: dict[str, int], edge: str = EDGE) -> None:
    assert usage_by_tenant_hour(edge) == expected_usage(truth, labels)
    assert unknown_by_label(edge) == expected_unknown(truth, labels)


def hour_of(ts: float) -> datetime:
    return datetime.fromtimestamp(int(ts // HOUR) * HOUR, tz=UTC)


def db_env() -> dict[str, str]:
    """Environment for a subprocess that must use this test's database."""
    from django.db import connection

    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{auth}@{s['HOST']}:{s['PORT'] or 5432}/{s['NAME']}"
    env["DJANGO_DEBUG"] = "true"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def ingest_command(path: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "manage.py"),
        "ingest_logs",
        "--edge",
        EDGE,
        "--path",
        str(path),
        *extra,
    ]


def run_ingest_command(path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ingest_command(path, *extra),
        env=db_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
