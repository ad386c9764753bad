"""The site's one SVG bar chart (console usage card, staff dashboard). Pure: no Django imports.

Callers give (label, value) points and a function that writes a value for people; the template
tag `bar_chart` (quota.templatetags.quota) passes the locale-aware `si_bytes`, so every page
that draws a chart draws it here and in the same shape: an accessible <svg role="img"> named by
its title, a round scale at the top and 0 at the baseline, one bar per point with a <title>
tooltip, the first and last labels under the bars. Coordinates are written here, never by a
template, so a locale's decimal comma can never reach the SVG.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from quota.units import format_bytes

WIDTH = 600
HEIGHT = 160
PAD_LEFT = 60  # the scale labels
PAD_BOTTOM = 20  # the first and last labels


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


def nice_ceiling(n: int) -> int:
    """The smallest 1, 2 or 5 x 10^k at or above n (a round top for the chart's scale)."""
    if n <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= n:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= n:
            return step * magnitude
    return 10 * magnitude


def chart_bars(
    points: Sequence[tuple[str, int]], *, width: int = WIDTH, height: int = HEIGHT
) -> tuple[list[Bar], int]:
    """The bars' geometry and the scale's top; bars stand on y = height - PAD_BOTTOM."""
    top = nice_ceiling(max((v for _, v in points), default=0))
    base = height - PAD_BOTTOM
    slot = (width - PAD_LEFT) / max(1, len(points))
    bars = []
    for i, (label, value) in enumerate(points):
        h = round(base * value / top, 2) if value > 0 else 0
        if value > 0 and h < 1:
            h = 1  # a point with any traffic stays visible
        bars.append(
            Bar(
                x=round(PAD_LEFT + i * slot + 0.5, 2),
                y=round(base - h, 2),
                width=max(round(slot - 1, 2), 1),
                height=h,
                label=label,
                value=value,
            )
        )
    return bars, top


def _n(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def bar_chart_svg(
    points: Sequence[tuple[str, int]],
    *,
    title: str = "",
    width: int = WIDTH,
    height: int = HEIGHT,
    css_class: str = "chart",
    value_text: Callable[[int], str] = format_bytes,
) -> str:
    """An accessible SVG with one bar per point; each bar has a <title> tooltip.

    Every piece of text is escaped here, so the result may be marked safe.
    """
    bars, top = chart_bars(points, width=width, height=height)
    base = height - PAD_BOTTOM
    parts = [
        f'<svg class="{escape(css_class)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="12" font-size="11" class="scale">{escape(value_text(top))}</text>',
        f'<text x="0" y="{base}" font-size="11" class="scale">0</text>',
        f'<line x1="{PAD_LEFT}" y1="0.5" x2="{width}" y2="0.5" stroke="#ddd" '
        'stroke-dasharray="4 4" class="grid"/>',
        f'<line x1="{PAD_LEFT}" y1="{base}" x2="{width}" y2="{base}" stroke="#999" class="axis"/>',
    ]
    for b in bars:
        parts.append(
            f'<rect x="{_n(b.x)}" y="{_n(b.y)}" width="{_n(b.width)}" height="{_n(b.height)}" '
            f'fill="#2b6cb0" data-label="{escape(b.label)}" data-value="{b.value}">'
            f"<title>{escape(b.label)}: {escape(value_text(b.value))}</title></rect>"
        )
    if bars:
        parts.append(
            f'<text x="{PAD_LEFT}" y="{height - 4}" font-size="11" class="label">'
            f"{escape(bars[0].label)}</text>"
        )
        parts.append(
            f'<text x="{width}" y="{height - 4}" font-size="11" text-anchor="end" class="label">'
            f"{escape(bars[-1].label)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
