"""The console's status card: one context for the page and for its JSON poll (same template),
so the card the page loads with and the card the poll brings are the same."""

from __future__ import annotations

from django.template.loader import render_to_string
from django.utils import timezone

from accelerator import selectors
from accelerator.models import Tenant
from accelerator.refusals import refusal_is_current, refusal_text


def status_context(*, tenant: Tenant) -> dict:
    activity = selectors.activity_for(tenant=tenant)
    connected = activity is not None
    context: dict = {
        "tenant": tenant,
        "activity": activity,
        "status_state": "connected" if connected else "waiting",
        "first_pull_commands": selectors.first_pull_commands(),
        "setup_commands": selectors.setup_commands(label=tenant.label),
        "now": timezone.now(),
    }
    if activity is not None:
        context["client_name"] = selectors.client_display(
            client=activity.client, version=activity.client_version
        )
        context["pulls"] = selectors.recent_pulls(activity=activity)
        if activity.last_refusal_at is not None:
            context["refusal_text"] = refusal_text(activity.last_refusal_reason)
        context["refusing"] = refusal_is_current(activity)
    return context


def status_html(*, tenant: Tenant, request=None) -> tuple[str, str]:
    """(state, the card's HTML) for the JSON poll."""
    context = status_context(tenant=tenant)
    return context["status_state"], render_to_string(
        "accelerator/_status.html", context, request=request
    )
