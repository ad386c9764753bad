"""The language a person sees: their saved choice when logged in, else cookie or browser."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.utils import translation
from django.views.decorators.http import require_POST
from django.views.i18n import set_language

_LANGUAGES = {code for code, _name in settings.LANGUAGES}


def language_pick(*candidates: str | None) -> str:
    """The first candidate that is one of LANGUAGES, else LANGUAGE_CODE."""
    for language in candidates:
        if language in _LANGUAGES:
            return language
    return settings.LANGUAGE_CODE


def language_for_user(user) -> str:
    """The language to write to a user in without a request (emails sent by tasks): the one
    saved on the account (chosen with the selector, or the one they signed up in)."""
    return language_pick(getattr(user, "language", None))


class UserLanguageMiddleware:
    """Activates a logged-in user's saved language (after AuthenticationMiddleware)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.language in _LANGUAGES:
            translation.activate(user.language)
            request.LANGUAGE_CODE = user.language
        return self.get_response(request)


@login_not_required
@require_POST
def language_set(request: HttpRequest) -> HttpResponse:
    """Django's set_language (cookie, redirect back), remembered on the account too."""
    language = request.POST.get("language", "")
    if language not in _LANGUAGES:
        # Django's view takes any language it has a catalogue for (fr, zh-hant) and sets the
        # cookie; ours are only LANGUAGES: just go back.
        request.POST = request.POST.copy()
        request.POST["language"] = ""
    response = set_language(request)
    if request.user.is_authenticated and language in _LANGUAGES:
        get_user_model().objects.filter(pk=request.user.pk).update(language=language)
    return response
