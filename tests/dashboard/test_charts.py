"""The one bar chart (quota.charts) and the pages that draw it."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from accelerator.services import tenant_start
from quota.charts import bar_chart_svg
from quota.usage import UsageDelta, usage_apply
from tests.api.conftest import hour

NS = "{http://www.w3.org/2000/svg}"


def test_one_bar_per_point_scaled_to_the_largest():
    svg = bar_chart_svg([("2026-01-01", 0), ("2026-01-02", 5), ("2026-01-03", 10)], height=220)
    root = ET.fromstring(svg)
    bars = root.findall(f"{NS}rect")
    assert [b.get("data-value") for b in bars] == ["0", "5", "10"]
    heights = [float(b.get("height")) for b in bars]
    assert heights[0] == 0 and heights[2] == 200 and heights[1] == 100


def test_empty_and_all_zero_series_render():
    assert ET.fromstring(bar_chart_svg([])).tag == f"{NS}svg"
    root = ET.fromstring(bar_chart_svg([("a", 0), ("b", 0)]))
    assert all(float(b.get("height")) == 0 for b in root.findall(f"{NS}rect"))


def test_labels_are_escaped():
    svg = bar_chart_svg([('<script>"x"</script>', 1)], title="a & b")
    assert "<script>" not in svg
    ET.fromstring(svg)  # still well-formed XML


def _shape(svg: str) -> tuple:
    """What a chart is made of, whatever its size and data: the root's attributes, the other
    elements with their classes, each bar's attributes and tooltip."""
    root = ET.fromstring(svg)
    bars = root.findall(f"{NS}rect")
    assert bars and all([c.tag for c in b] == [f"{NS}title"] for b in bars)
    others = [(e.tag, e.get("class")) for e in root if e.tag != f"{NS}rect"]
    return sorted(root.attrib), others, {tuple(sorted(b.attrib)) for b in bars}


@pytest.mark.django_db
def test_console_and_dashboard_draw_the_same_chart(client, owner, staff):
    """The console's usage card and both staff pages draw their charts with quota.charts."""
    tenant = tenant_start(user=owner)
    usage_apply(deltas=[UsageDelta(tenant.pk, "e1", hour(0), 3_456_000_000, 1, 0)])
    expected = _shape(bar_chart_svg([("2026-01-01", 0), ("2026-01-02", 5)], title="t"))
    svg = re.compile(r"<svg .*?</svg>", re.S)
    client.force_login(owner)
    console = svg.findall(client.get("/console/").content.decode())
    client.force_login(staff)
    overview = svg.findall(client.get("/staff/").content.decode())
    detail = svg.findall(client.get(f"/staff/tenants/{tenant.pk}/").content.decode())
    charts = [c for c in console + overview + detail if 'role="img"' in c]
    assert len(charts) == 3
    assert [_shape(c) for c in charts] == [expected] * 3
    assert all(f"{hour(0):%Y-%m-%d}: 3.46 GB</title>" in c for c in charts)
