"""The invites page and the invite link. Thin: parse, call a service, render."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from accounts import selectors, services
from accounts.forms import InviteEmailForm
from accounts.invite_flow import invite_remember

_REFUSAL_STATUS = {
    services.MALFORMED: 400,
    services.UNKNOWN: 404,
    services.INACTIVE: 410,
    services.SELF: 403,
    services.SECOND: 403,
    services.EXISTING_ACCOUNT: 403,
}


@login_not_required
@require_GET
def invite_link(request: HttpRequest, code: str) -> HttpResponse:
    """/invite/<code>: remember the code and go to sign-up, or explain the refusal."""
    try:
        user = request.user if request.user.is_authenticated else None
        services.invite_check_for_visitor(code=code, user=user)
    except services.InviteRefused as refused:
        return render(
            request,
            "accounts/invite_refused.html",
            {"message": refused.message, "reason": refused.reason},
            status=_REFUSAL_STATUS.get(refused.reason, 400),
        )
    invite_remember(request=request, code=code)
    return redirect("account_signup")


def _invite_url(request: HttpRequest, code: str) -> str:
    return request.build_absolute_uri(reverse("invite_link", kwargs={"code": code}))


@require_http_methods(["GET", "POST"])
def invites(request: HttpRequest) -> HttpResponse:
    code = services.invite_code_get(user=request.user)
    link = _invite_url(request, code)
    status = 200
    form = InviteEmailForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            try:
                services.invite_email_send(
                    inviter=request.user, email=form.cleaned_data["email"], link=link
                )
            except services.InviteRefused as refused:
                form.add_error("email", refused.message)
            else:
                messages.success(
                    request, services.invite_sent_message(email=form.cleaned_data["email"])
                )
                return redirect("invites")
        status = 400
    context = {
        "invite_link": link,
        "form": form,
        "invitees": selectors.invitees_for_user(user=request.user),
        "emails": selectors.invite_emails_for_user(user=request.user),
        "stats": selectors.invite_stats_for_user(user=request.user),
    }
    return render(request, "accounts/invites.html", context, status=status)
