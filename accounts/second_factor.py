"""Staff pages need a second factor where STAFF_MFA_REQUIRED (production): a staff account
without TOTP, or a session that signed in without it, does not reach /staff/ or /admin/.

allauth records each way a session authenticated; "mfa" is there only after a TOTP code or a
recovery code was given (at login, or when allauth asks again). So a password-only login,
through /admin/login/ for instance, is not enough either.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from allauth.account.authentication import get_authentication_records
from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext as _

STAFF_PREFIXES = ("/staff/", "/admin/")
# Where staff without a second factor may still go: login, logout, enrolment.
_ADMIN_OPEN = ("/admin/login/", "/admin/logout/")


def staff_second_factor_missing(request: HttpRequest) -> str | None:
    """Why this staff request may not proceed ("enrol" or "verify"), or None when it may."""
    user = request.user
    if not (settings.STAFF_MFA_REQUIRED and user.is_authenticated and user.is_staff):
        return None
    if not is_mfa_enabled(user, ["totp"]):
        return "enrol"
    records = get_authentication_records(request, user)
    if not any(record.get("method") == "mfa" for record in records):
        return "verify"
    return None


class StaffSecondFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path.startswith(STAFF_PREFIXES) and not path.startswith(_ADMIN_OPEN):
            missing = staff_second_factor_missing(request)
            if missing == "enrol":
                messages.warning(
                    request,
                    _("Staff pages need two-factor sign-in: set up an authenticator app first."),
                )
                return HttpResponseRedirect(reverse("mfa_activate_totp"))
            if missing == "verify":
                query = urlencode({"next": request.get_full_path()})
                return HttpResponseRedirect(f"{reverse('mfa_reauthenticate')}?{query}")
        return self.get_response(request)
