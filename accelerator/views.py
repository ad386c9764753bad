from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from accelerator import selectors, services, status
from accelerator.labels import is_valid_label
from accelerator.models import Tenant


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


def _sh_single_quoted(value: str) -> str:
    """For a value inside '...' in the script: a quote ends it, so it is spelled '\\''."""
    return value.replace("'", "'\\''")


@login_not_required
@require_GET
def setup_script(request: HttpRequest, label: str) -> HttpResponse:
    """The one-line setup (templates/accelerator/setup.sh) for a current address. The label is
    the secret, as in the mirror host itself: an unknown or rotated one is a 404."""
    if not is_valid_label(label) or not Tenant.objects.filter(label=label).exists():
        return HttpResponse(
            "# unknown accelerator address: copy the current command from your console\n",
            status=404,
            content_type="text/plain; charset=utf-8",
        )
    values = {
        "mirror_url": selectors.mirror_url(label=label),
        "mirror_host": selectors.mirror_host(label=label),
        "mirror_domain": settings.MIRROR_DOMAIN,
        "insecure": "true" if settings.MIRROR_SCHEME == "http" else "false",
        "setup_url": selectors.setup_url(label=label),
        "console_url": settings.SITE_URL.rstrip("/") + "/console/",
    }
    text = render_to_string(
        "accelerator/setup.sh", {k: _sh_single_quoted(v) for k, v in values.items()}
    )
    response = HttpResponse(text, content_type="text/x-shellscript; charset=utf-8")
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
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
