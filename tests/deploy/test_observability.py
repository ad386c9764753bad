"""The shipped Prometheus and Grafana files: promtool accepts them, the alert unit tests pass,
and every metric they name is one the platform (or the nginx exporter) exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ops.metrics import REQUEST_SECONDS, platform_metrics
from ops.selectors import Snapshot
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "accelerator.json"
# What prometheus-nginx-exporter (stub_status) and Prometheus itself give.
EXPORTER = {
    "nginx_up",
    "nginx_connections_active",
    "nginx_connections_accepted",
    "nginx_connections_handled",
    "nginx_connections_reading",
    "nginx_connections_writing",
    "nginx_connections_waiting",
    "nginx_http_requests_total",
    "up",
}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "le",
    "inf",
    "nan",
}


def exported() -> set[str]:
    from django.utils import timezone

    empty = Snapshot(timezone.now(), [], [], [], {}, {}, [], [])
    names = set(EXPORTER)
    for family in platform_metrics(empty):
        names.add(family.name + ("_total" if family.type == "counter" else ""))
    h = REQUEST_SECONDS._name
    names |= {f"{h}_bucket", f"{h}_sum", f"{h}_count"}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression (label matchers, groupings, ranges and
    strings removed; what stays before "(" is a function)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[m.end() :].lstrip()
        if rest.startswith("(") or m.group().lower() in PROMQL_WORDS:
            continue
        if m.start() > 0 and (expr[m.start() - 1].isdigit() or expr[m.start() - 1] == "."):
            continue  # 1e3, 0.5
        names.add(m.group())
    return names


def test_metric_names_are_found_in_promql():
    expr = 'sum by (edge) (rate(accel_edge_requests_total{cache="HIT"}[5m])) / on() max(up)'
    assert metric_names(expr) == {"accel_edge_requests_total", "up"}


def test_dashboard_is_json_and_names_only_exported_metrics():
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dash["panels"] for t in panel["targets"]]
    assert len(exprs) >= 5
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("traffic", "hit ratio", "ingestion lag", "refusals", "top tenants"):
        assert topic in titles
    unknown = {name for e in exprs for name in metric_names(e)} - exported()
    assert unknown == set()
    # Tenants appear by label, never by email address.
    assert "email" not in DASHBOARD.read_text().lower()


def test_alert_rules_name_only_exported_metrics():
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {
        "IngestionLagging",
        "EdgeSilent",
        "EdgeErrorRatioHigh",
        "UpstreamAllowanceLow",
        "EdgeCacheDiskFull",
    } <= names
    unknown = {name for e in exprs for name in metric_names(e)} - exported()
    assert unknown == set()


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    require(path is not None, "promtool is not installed (scripts/test.sh installs it)")
    return str(path)


@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ],
    ids=["config", "rules", "rule-unit-tests"],
)
def test_promtool_accepts_the_shipped_files(promtool, args):
    result = subprocess.run(
        [promtool, *args], cwd=PROM, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
