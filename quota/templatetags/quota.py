"""Template tags of the ledger: the console's quota card and the `si_bytes` filter.

The console view belongs to the accelerator app; this inclusion tag gives its template the
ledger's numbers without that view knowing about them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django import template
from django.utils import formats

from quota import ledger
from quota.units import format_bytes

register = template.Library()

CHART_WIDTH = 600
CHART_HEIGHT = 140
CHART_TOP = 16  # room for the scale label


@register.filter
def si_bytes(value) -> str:
    """Integer bytes in SI units: 1 GB = 10^9 bytes, the number in the active locale's format.

    format_bytes decides the digits and the unit; only the decimal separator is the locale's
    (units stay "kB", "MB", "GB": that is how Chinese consoles write them too).
    """
    try:
        text = format_bytes(int(value))
    except (TypeError, ValueError):
        return ""
    number, unit = text.rsplit(" ", 1)
    return f"{formats.number_format(Decimal(number))} {unit}"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: str
    bytes: int


def _nice_ceiling(n: int) -> int:
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


def chart_bars(days: list[ledger.DayUsage]) -> tuple[list[Bar], int]:
    top = _nice_ceiling(max((d.bytes for d in days), default=0))
    slot = CHART_WIDTH / max(1, len(days))
    usable = CHART_HEIGHT - CHART_TOP
    bars = []
    for i, d in enumerate(days):
        h = round(usable * d.bytes / top, 2) if d.bytes else 0
        if d.bytes and h < 1:
            h = 1  # a day with any traffic stays visible
        bars.append(
            Bar(
                x=round(i * slot + 1, 2),
                y=round(CHART_HEIGHT - h, 2),
                width=round(slot - 2, 2),
                height=h,
                day=d.day.isoformat(),
                bytes=d.bytes,
            )
        )
    return bars, top


@register.inclusion_tag("quota/_console.html")
def quota_console(tenant) -> dict:
    if tenant is None:
        return {"tenant": None}
    summary = ledger.month_summary(tenant=tenant)
    days = ledger.usage_daily(tenant=tenant, days=30)
    bars, top = chart_bars(days)
    return {
        "tenant": tenant,
        "summary": summary,
        "bars": bars,
        "chart_top": top,
        "chart_width": CHART_WIDTH,
        "chart_height": CHART_HEIGHT,
        "chart_total": sum(d.bytes for d in days),
        "first_day": days[0].day,
        "last_day": days[-1].day,
        "grants": ledger.grants_for_tenant(tenant=tenant),
    }
