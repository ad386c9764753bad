"""Template tags of the ledger: the console's quota card, the `si_bytes` filter and the
`bar_chart` tag every page draws its charts with.

The console view belongs to the accelerator app; this inclusion tag gives its template the
ledger's numbers without that view knowing about them.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django import template
from django.utils import formats
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

from quota import charts
from quota.month import month_summary
from quota.selectors import grants_for_tenant, usage_by_registry, usage_daily
from quota.units import format_bytes

register = template.Library()


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


@register.simple_tag
def bar_chart(
    points, *, title: str, width: int = charts.WIDTH, height: int = charts.HEIGHT, css_class="chart"
) -> str:
    """quota.charts' bar chart, values in SI bytes in the active locale's format."""
    return mark_safe(  # every piece of text is escaped by quota.charts
        charts.bar_chart_svg(
            points,
            title=title,
            width=width,
            height=height,
            css_class=css_class,
            value_text=si_bytes,
        )
    )


@register.inclusion_tag("quota/_console.html")
def quota_console(tenant) -> dict:
    if tenant is None:
        return {"tenant": None}
    summary = month_summary(tenant=tenant)
    days = usage_daily(tenant=tenant, days=30)
    title = _("Daily usage over the last 30 days, %(total)s in total")
    return {
        "tenant": tenant,
        "summary": summary,
        "chart_points": [(d.day.isoformat(), d.bytes) for d in days],
        "chart_title": title % {"total": si_bytes(sum(d.bytes for d in days))},
        "grants": grants_for_tenant(tenant=tenant),
        # This month's traffic per registry (the same month as the figures above).
        "by_registry": usage_by_registry(
            tenant=tenant,
            start=summary.month_start.date(),
            end=(summary.resets_at - timedelta(seconds=1)).date(),
        ),
    }
