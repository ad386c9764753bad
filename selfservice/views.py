"""The account page, the data export, and deletion with its undo link. Thin: parse, call one
service or selector, render."""

from __future__ import annotations

import json

from allauth.account.decorators import reauthentication_required
from allauth.account.models import EmailAddress
from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from api import serializers as api_serializers
from api.views import StaffActionBase
from dashboard.forms import ReasonForm
from dashboard.views import staff_only
from selfservice import deletion
from selfservice.export import account_export
from selfservice.forms import DeleteAccountForm


@require_GET
def account_page(request: HttpRequest) -> HttpResponse:
    user = request.user
    context = {
        "addresses": EmailAddress.objects.filter(user=user).order_by("-primary", "email"),
        "totp": is_mfa_enabled(user, ["totp"]),
        "grace_days": settings.ACCOUNT_DELETE_GRACE_DAYS,
    }
    return render(request, "selfservice/account.html", context)


@require_GET
def export_download(request: HttpRequest) -> HttpResponse:
    """One JSON file with everything the service knows about the reader."""
    body = json.dumps(account_export(user=request.user), ensure_ascii=False, indent=2)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    name = f"mirror-accelerator-account-{timezone.now():%Y-%m-%d}.json"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response


class ExportView(APIView):
    @extend_schema(
        summary="Everything the service knows about you (the account page's export)",
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        response = Response(account_export(user=request.user))
        response["Cache-Control"] = "no-store"
        return response


@reauthentication_required
@require_http_methods(["GET", "POST"])
def delete(request: HttpRequest) -> HttpResponse:
    """Delete the account: after a fresh login (allauth asks for it) and the address typed."""
    form = DeleteAccountForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        deletion.account_delete(user=request.user)
        logout(request)
        return redirect("account_deleted")
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "grace_days": settings.ACCOUNT_DELETE_GRACE_DAYS}
    return render(request, "selfservice/delete.html", context, status=status)


@login_not_required
@require_GET
def deleted(request: HttpRequest) -> HttpResponse:
    context = {"grace_days": settings.ACCOUNT_DELETE_GRACE_DAYS}
    return render(request, "selfservice/deleted.html", context)


@login_not_required
@require_http_methods(["GET", "POST"])
def undo_delete(request: HttpRequest, token: str) -> HttpResponse:
    """The emailed link. GET asks (mail scanners follow links); POST restores the account."""
    try:
        if request.method == "POST":
            deletion.account_undo_delete(token=token)
        else:
            pending = deletion.deletion_for_undo(token=token)
    except deletion.UndoRefused:
        return render(request, "selfservice/undo_refused.html", status=410)
    if request.method == "POST":
        messages.success(request, _("Your account is restored. Log in as before."))
        return redirect("account_login")
    return render(request, "selfservice/undo.html", {"pending": pending})


@staff_only
@require_POST
def staff_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Staff run the same deletion for an account (audited, with a reason)."""
    user = get_object_or_404(User, pk=pk)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("A reason is required to delete an account."))
    elif user.pk == request.user.pk:
        messages.error(request, _("Delete your own account from your account page."))
    else:
        deletion.staff_account_delete(
            actor=request.user, user=user, reason=form.cleaned_data["reason"]
        )
        messages.success(
            request,
            _(
                "Account deactivated; its data is erased after %(n)d days "
                "unless the owner undoes it."
            )
            % {"n": settings.ACCOUNT_DELETE_GRACE_DAYS},
        )
    tenant = getattr(user, "tenant", None)
    if tenant is not None:
        return redirect("dashboard_tenant", pk=tenant.pk)
    return redirect("dashboard")


class StaffDeleteView(StaffActionBase):
    """/api/v1/staff/tenants/<id>/delete-account/: the dashboard's deletion, by tenant id like
    the other staff actions."""

    @extend_schema(
        request=api_serializers.ReasonSerializer,
        responses={201: api_serializers.StaffActionSerializer},
    )
    def post(self, request, pk: int):
        """Delete the tenant's account (deactivated now, erased after the grace period)."""
        return super().post(request, pk)

    def act(self, *, actor, tenant, data):
        if tenant.user_id == actor.pk:
            raise serializers.ValidationError(
                {"non_field_errors": [_("Delete your own account from your account page.")]}
            )
        return deletion.staff_account_delete(actor=actor, user=tenant.user, reason=data["reason"])
