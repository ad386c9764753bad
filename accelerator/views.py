from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from accelerator import selectors, services, status


@login_not_required
@require_GET
def landing(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("console")
    return render(request, "accelerator/landing.html")


@require_GET
def console(request: HttpRequest) -> HttpResponse:
    tenant = selectors.tenant_for_user(user=request.user)
    context = {"tenant": tenant}
    if tenant is not None:
        context["mirror_url"] = selectors.mirror_url(label=tenant.label)
        context["snippets"] = selectors.client_snippets(label=tenant.label)
        context["rotate_within"] = selectors.rotation_grace_seconds()
        context.update(status.status_context(tenant=tenant))
    return render(request, "accelerator/console.html", context)


@require_GET
def console_status(request: HttpRequest) -> JsonResponse:
    """The status card for the console's poll (static/js/status.js): small, never cached."""
    tenant = selectors.tenant_for_user(user=request.user)
    if tenant is None:
        raise Http404
    state, html = status.status_html(tenant=tenant, request=request)
    response = JsonResponse({"state": state, "html": html})
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def start(request: HttpRequest) -> HttpResponse:
    services.tenant_start(user=request.user)
    return redirect("console")


@require_POST
def rotate(request: HttpRequest) -> HttpResponse:
    tenant = selectors.tenant_for_user(user=request.user)
    if tenant is None:
        messages.error(request, _("Start your accelerator first."))
        return redirect("console")
    try:
        services.tenant_rotate(tenant=tenant)
    except services.RotationLimited as refused:
        messages.error(request, refused.message)
        return redirect("console")
    messages.success(
        request,
        _(
            "Your accelerator has a new address. Your old address stops working within "
            "%(n)d seconds; what it serves until then is charged to you."
        )
        % {"n": selectors.rotation_grace_seconds()},
    )
    return redirect("console")
