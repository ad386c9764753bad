"""The console's token page: create (secret shown once) and revoke personal access tokens."""

from __future__ import annotations

from datetime import timedelta

from allauth.account.decorators import reauthentication_required
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from api import selectors, services
from api.forms import TokenForm


# Minting needs a recent password check: allauth asks for the password, then replays this POST.
@require_http_methods(["GET", "POST"])
@reauthentication_required(allow_get=True)
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None, user=request.user)
    issued = None
    if request.method == "POST" and form.is_valid():
        try:
            issued = services.token_create(
                user=request.user,
                name=form.cleaned_data["name"],
                expires_at=timezone.now() + timedelta(days=form.cleaned_data["expires_in_days"]),
                scopes=form.cleaned_data["scopes"],
            )
        except (services.TokenLimitReached, services.TokenScopeRefused) as refused:
            form.add_error(None, refused.message)
        else:
            # The secret is in this response only, never in the session or the database;
            # a fresh form below so the page cannot resubmit the same fields by accident.
            form = TokenForm(user=request.user)
    context = {
        "form": form,
        "issued": issued,
        "tokens": selectors.token_list(user=request.user),
        "now": timezone.now(),
    }
    response = render(request, "api/tokens.html", context, status=400 if form.errors else 200)
    # Keep the secret out of shared caches and history.
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    if not services.token_revoke(user=request.user, token_id=pk):
        raise Http404
    messages.success(request, _("Token revoked. Scripts using it stop working at once."))
    return redirect("api_tokens_page")
