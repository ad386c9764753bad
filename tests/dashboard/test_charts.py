from __future__ import annotations

import xml.etree.ElementTree as ET

from dashboard.charts import bar_chart_svg

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
