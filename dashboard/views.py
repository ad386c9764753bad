"""Staff pages under /staff/. Anyone who is not staff gets 404: the pages do not exist for them."""

from __future__ import annotations

import functools
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from accelerator.models import Tenant
from accelerator.selectors import mirror_url, retired_labels, rotation_grace_seconds
from accounts.models import AccountDeletion, Invite
from dashboard import integrations, selectors, services
from dashboard.forms import GrantForm, ReasonForm, TenantSearchForm
from quota.errors import LedgerError
from quota.month import month_summary
from quota.selectors import grants_for_tenant, usage_daily
from quota.units import GB


def staff_only(view):
    @login_not_required
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not (request.user.is_authenticated and request.user.is_staff):
            raise Http404
        return view(request, *args, **kwargs)

    return wrapper


def _figures_context(traffic: dict) -> dict:
    return {
        "daily": traffic["daily"],
        "chart_title": _("Traffic per day, last 90 days"),
        "top": selectors.top_tenants(traffic=traffic),
        "near_quota": selectors.tenants_near_quota(traffic=traffic),
        "near_quota_candidates": traffic["near_quota_candidates"],
        "exhausted": selectors.tenants_exhausted(),
        "exhausted_count": selectors.tenants_exhausted_count(),
        "signups": selectors.recent_signups(),
        "credited_invites": integrations.credited_invites(),
        "ingest_health": integrations.ingest_health(),
        "malformed_samples": selectors.malformed_samples(),
        "unknown_labels": selectors.unknown_label_traffic(),
    }


def _figures_html(request: HttpRequest, traffic: dict) -> str:
    """The sections built from the cached figures, rendered once per refresh and language.

    No stampede lock here: the dashboard's one guard is in selectors.dashboard_traffic,
    around the expensive scan. These sections are a few indexed reads, so at worst the few
    requests that arrive while a new version is first rendered each render it once.
    """
    version = traffic["computed_at"].isoformat()
    key = f"dashboard:figures:{get_language()}"
    cached = cache.get(key)
    if cached is not None and cached[0] == version:
        return cached[1]
    html = render_to_string("dashboard/_figures.html", _figures_context(traffic), request=request)
    cache.set(key, (version, html), settings.DASHBOARD_CACHE_SECONDS * 3)
    return html


@staff_only
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    traffic = selectors.dashboard_traffic()
    context = {
        # Read live: tenant states and the audit trail, so a staff action shows at once.
        "totals": selectors.dashboard_totals(traffic=traffic),
        "actions": selectors.recent_actions(limit=10),
        "held_invites": selectors.held_invites_count(),
        "allowances": selectors.upstream_allowances(),
        "allowance_warn_percent": settings.UPSTREAM_RATELIMIT_WARN_PERCENT,
        "computed_at": traffic["computed_at"],
        "figures": mark_safe(_figures_html(request, traffic)),  # our own rendered template
        "search": TenantSearchForm(),
        "deletions": selectors.account_deletions(),
        "deletion_counts": selectors.account_deletion_counts(),
    }
    return render(request, "dashboard/overview.html", context)


@staff_only
@require_GET
def tenants(request: HttpRequest) -> HttpResponse:
    form = TenantSearchForm(request.GET or None)
    q = form.cleaned_data["q"].strip() if form.is_valid() else ""
    page = Paginator(selectors.tenant_search(q=q), 50).get_page(request.GET.get("page"))
    return render(request, "dashboard/tenants.html", {"form": form, "page": page, "q": q})


def _tenant_context(tenant: Tenant, **forms) -> dict:
    return {
        "tenant": tenant,
        "mirror_url": mirror_url(label=tenant.label),
        "summary": month_summary(tenant=tenant),
        "daily": [(d.day.isoformat(), d.bytes) for d in usage_daily(tenant=tenant, days=30)],
        "chart_title": _("Traffic per day, last 30 days"),
        "grants": grants_for_tenant(tenant=tenant)[:20],
        "actions": selectors.recent_actions(tenant=tenant, limit=50),
        "retired_labels": retired_labels(tenant=tenant, limit=20),
        "rotate_per_day": settings.ROTATE_PER_DAY,
        "grant_form": forms.get("grant_form") or GrantForm(),
        "reason_form": forms.get("reason_form") or ReasonForm(),
        "failed": forms.get("failed", ""),
        "deletion": AccountDeletion.objects.filter(user_id=tenant.user_id).first(),
    }


@staff_only
@require_GET
def tenant_detail(request: HttpRequest, pk: int) -> HttpResponse:
    tenant = get_object_or_404(Tenant.objects.select_related("user"), pk=pk)
    return render(request, "dashboard/tenant.html", _tenant_context(tenant))


def _act(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    tenant = get_object_or_404(Tenant.objects.select_related("user"), pk=pk)
    form = GrantForm(request.POST) if kind == "grant" else ReasonForm(request.POST)
    if not form.is_valid():
        forms = {"grant_form" if kind == "grant" else "reason_form": form, "failed": kind}
        return render(
            request, "dashboard/tenant.html", _tenant_context(tenant, **forms), status=400
        )
    data, actor = form.cleaned_data, request.user
    if kind == "grant":
        days = data.get("expires_in_days")
        try:
            services.staff_grant(
                actor=actor,
                tenant=tenant,
                bytes=data["gigabytes"] * GB,
                reason=data["reason"],
                expires_at=timezone.now() + timedelta(days=days) if days else None,
                idempotency_key=data.get("idempotency_key") or None,
            )
        except LedgerError as refused:
            form.add_error(None, str(refused))
            context = _tenant_context(tenant, grant_form=form, failed=kind)
            return render(request, "dashboard/tenant.html", context, status=400)
        messages.success(request, _("Granted %(gb)d GB.") % {"gb": data["gigabytes"]})
    elif kind == "suspend":
        services.staff_suspend(actor=actor, tenant=tenant, reason=data["reason"])
        messages.success(request, _("Tenant suspended."))
    elif kind == "resume":
        services.staff_resume(actor=actor, tenant=tenant, reason=data["reason"])
        messages.success(request, _("Tenant resumed."))
    else:
        services.staff_rotate(actor=actor, tenant=tenant, reason=data["reason"])
        messages.success(
            request,
            _("Label rotated; the old address stops working within %(n)d seconds.")
            % {"n": rotation_grace_seconds()},
        )
    return redirect("dashboard_tenant", pk=tenant.pk)


@staff_only
@require_POST
def tenant_grant(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, "grant")


@staff_only
@require_POST
def tenant_suspend(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, "suspend")


@staff_only
@require_POST
def tenant_resume(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, "resume")


@staff_only
@require_POST
def tenant_rotate(request: HttpRequest, pk: int) -> HttpResponse:
    return _act(request, pk, "rotate")


@staff_only
@require_GET
def actions(request: HttpRequest) -> HttpResponse:
    page = Paginator(selectors.recent_actions(limit=None), 50).get_page(request.GET.get("page"))
    return render(request, "dashboard/actions.html", {"page": page})


@staff_only
@require_GET
def invites_held(request: HttpRequest) -> HttpResponse:
    """Invite credits held by a risk signal, waiting for a staff decision."""
    page = Paginator(selectors.held_invites(), 50).get_page(request.GET.get("page"))
    return render(request, "dashboard/invites.html", {"page": page, "form": ReasonForm()})


def _decide(request: HttpRequest, pk: int, approve: bool) -> HttpResponse:
    invite = get_object_or_404(Invite, pk=pk)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        page = Paginator(selectors.held_invites(), 50).get_page(1)
        context = {"page": page, "form": form, "failed": pk}
        return render(request, "dashboard/invites.html", context, status=400)
    decide = services.staff_invite_approve if approve else services.staff_invite_reject
    try:
        decide(actor=request.user, invite=invite, reason=form.cleaned_data["reason"])
    except LedgerError as refused:
        messages.error(request, str(refused))
    else:
        if approve:
            messages.success(request, _("Invite credit approved and paid."))
        else:
            messages.success(request, _("Invite credit rejected; nothing was paid."))
    return redirect("dashboard_invites")


@staff_only
@require_POST
def invite_approve(request: HttpRequest, pk: int) -> HttpResponse:
    return _decide(request, pk, approve=True)


@staff_only
@require_POST
def invite_reject(request: HttpRequest, pk: int) -> HttpResponse:
    return _decide(request, pk, approve=False)
