"""The console's token page: create (secret shown once) and revoke personal access tokens."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from api import selectors, services
from api.forms import TokenForm

_NEW_TOKEN = "api_new_token"


@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            issued = services.token_create(
                user=request.user,
                name=form.cleaned_data["name"],
                expires_at=timezone.now() + timedelta(days=form.cleaned_data["expires_in_days"]),
            )
        except services.TokenLimitReached as refused:
            form.add_error(None, refused.message)
        else:
            # Post/redirect/get, so a reload cannot create a second token. The secret rides in
            # the session until the next page view, which shows it once and forgets it.
            request.session[_NEW_TOKEN] = {"name": issued.token.name, "secret": issued.secret}
            return redirect("api_tokens_page")
    context = {
        "form": form,
        "issued": request.session.pop(_NEW_TOKEN, None) if request.method == "GET" else None,
        "tokens": selectors.token_list(user=request.user),
        "now": timezone.now(),
    }
    response = render(request, "api/tokens.html", context, status=400 if form.errors else 200)
    # The secret is in this response only; keep it out of shared caches and history.
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    if not services.token_revoke(user=request.user, token_id=pk):
        raise Http404
    messages.success(request, _("Token revoked. Scripts using it stop working at once."))
    return redirect("api_tokens_page")
