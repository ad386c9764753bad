"""The README states the overspend bound that accelerator.gate.overspend_bound() computes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from accelerator.gate import ACCESS_LOG_FLUSH_SECONDS, overspend_bound

README = Path(__file__).resolve().parents[2] / "README.md"
TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "edge.conf.template"


def readme_formula() -> tuple[str, str, dict[str, str]]:
    """The bound's expression, L's expression and the symbol -> setting legend, from the README."""
    text = README.read_text()
    section = text.split("### Bounded overspend", 1)[1].split("\n### ", 1)[0]
    expr = re.search(r"^overspend <= (.+)$", section, re.M).group(1)
    lag = re.search(r"^- `L` = `([^`]+)`", section, re.M).group(1)
    legend = dict(re.findall(r"`([A-Za-z])` = `([A-Z_]+)`", section))
    return expr, lag, legend


def readme_bound(settings, largest_blob: int) -> int:
    expr, lag, legend = readme_formula()
    env = {symbol: getattr(settings, name) for symbol, name in legend.items()}
    env["L"] = eval(re.sub(r"[A-Z_]{3,}", lambda m: str(getattr(settings, m[0])), lag))  # noqa: S307
    env["B"] = largest_blob
    return eval(expr, {"__builtins__": {}}, env)  # noqa: S307


def test_the_readme_names_every_limit():
    expr, lag, legend = readme_formula()
    assert set(re.findall(r"\b[A-Za-z]\b", expr)) == set(legend) | {"L", "B"}
    assert set(legend.values()) == {
        "EDGE_TENANT_RATE",
        "EDGE_TENANT_CONNECTIONS",
        "EDGE_TENANT_REQUEST_RATE",
        "EDGE_TENANT_REQUEST_BURST",
        "EDGE_LOW_RATE",
        "EDGE_LOW_CONNECTIONS",
        "EDGE_LOW_REQUEST_RATE",
        "EDGE_LOW_REQUEST_BURST",
        "GATE_BLOB_GRACE_SECONDS",
    }
    assert lag.startswith(f"{ACCESS_LOG_FLUSH_SECONDS} + ")


def test_the_log_flush_in_the_bound_is_the_template_s():
    flushes = re.findall(
        r"access_log @@ACCESS_LOG@@ edge_json buffer=\w+ flush=(\d+)s;", TEMPLATE.read_text()
    )
    assert flushes == [str(ACCESS_LOG_FLUSH_SECONDS)]


@pytest.mark.parametrize("largest_blob", [0, 1, 100 * 10**6])
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"EDGE_TENANT_RATE": 3, "EDGE_TENANT_CONNECTIONS": 5, "EDGE_TENANT_REQUEST_RATE": 7},
        {"EDGE_TENANT_REQUEST_BURST": 11, "EDGE_LOW_RATE": 13, "EDGE_LOW_CONNECTIONS": 17},
        {"EDGE_LOW_REQUEST_RATE": 19, "EDGE_LOW_REQUEST_BURST": 23, "GATE_BLOB_GRACE_SECONDS": 29},
        {"INGEST_INTERVAL_SECONDS": 31, "EDGE_GATE_SYNC_SECONDS": 37},
    ],
)
def test_overspend_bound_is_the_readme_formula(settings, overrides, largest_blob):
    for name, value in overrides.items():
        setattr(settings, name, value)
    assert overspend_bound(largest_blob=largest_blob) == readme_bound(settings, largest_blob)


def test_the_default_bound_the_readme_quotes(settings):
    # "about 2.2 GB + 0.16 GB + 4 GB = 6.4 GB" with B = 100 MB and the default settings
    assert round(overspend_bound(largest_blob=100 * 10**6) / 1e9, 1) == 6.4
