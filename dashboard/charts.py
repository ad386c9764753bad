"""Server-rendered SVG bar chart. Pure: no Django imports."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from quota.units import format_bytes


def bar_chart_svg(
    points: Sequence[tuple[str, int]], *, width: int = 900, height: int = 200, title: str = ""
) -> str:
    """An accessible SVG with one bar per point; each bar has a <title> tooltip."""
    n = max(len(points), 1)
    top = max((v for _, v in points), default=0) or 1
    pad_left, pad_bottom = 60, 20
    inner_w, inner_h = width - pad_left, height - pad_bottom
    bar_w = inner_w / n
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="12" font-size="11">{escape(format_bytes(top))}</text>',
        f'<text x="0" y="{inner_h}" font-size="11">0</text>',
        f'<line x1="{pad_left}" y1="{inner_h}" x2="{width}" y2="{inner_h}" stroke="#999"/>',
    ]
    for i, (label, value) in enumerate(points):
        h = round(inner_h * value / top, 1)
        x = round(pad_left + i * bar_w, 1)
        parts.append(
            f'<rect x="{x}" y="{round(inner_h - h, 1)}" width="{max(round(bar_w - 1, 1), 1)}" '
            f'height="{h}" fill="#2b6cb0" data-label="{escape(label)}" data-value="{value}">'
            f"<title>{escape(label)}: {escape(format_bytes(value))}</title></rect>"
        )
    if points:
        parts.append(
            f'<text x="{pad_left}" y="{height - 4}" font-size="11">{escape(points[0][0])}</text>'
        )
        parts.append(
            f'<text x="{width}" y="{height - 4}" font-size="11" text-anchor="end">'
            f"{escape(points[-1][0])}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
