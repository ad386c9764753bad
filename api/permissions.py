from __future__ import annotations

from allauth.account.internal.flows.reauthentication import is_reauthentication_required
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, permissions
from rest_framework.authentication import SessionAuthentication

from api.models import PersonalAccessToken
from api.tokens import scopes_format, scopes_needed


class StaffOr404(permissions.BasePermission):
    """Staff endpoints do not exist for anyone else: 404, not 403, so they reveal nothing."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_staff):
            raise exceptions.NotFound()
        return True


class TokenScopes(permissions.BasePermission):
    """A token reaches only what its scopes allow: `read` for GET, `write` for the other
    methods, and `staff` besides on the staff API (the views guarded by StaffOr404, which
    answers first: a non-staff user still gets 404). A browser session is not scoped."""

    def has_permission(self, request, view) -> bool:
        token = request.auth
        if not isinstance(token, PersonalAccessToken):
            return True
        staff_api = StaffOr404 in getattr(view, "permission_classes", ())
        missing = scopes_needed(method=request.method, staff_api=staff_api) - token.scope_set
        if missing:
            self.message = _("This token lacks the %(scopes)s scope.") % {
                "scopes": scopes_format(missing)
            }
            return False
        return True


class RecentLogin(permissions.BasePermission):
    """Minting a token needs a recent password check (allauth's re-authentication)."""

    message = _(
        "Confirm your password first: minting a token needs a recent login. "
        "Open /accounts/reauthenticate/ in the browser, then try again."
    )

    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        return not is_reauthentication_required(request._request, app="")


class SessionOnly(permissions.BasePermission):
    """Token management needs the browser session: a leaked token cannot mint new tokens."""

    message = _("Manage tokens from a logged-in browser session.")

    def has_permission(self, request, view) -> bool:
        return bool(
            request.user
            and request.user.is_authenticated
            and isinstance(request.successful_authenticator, SessionAuthentication)
        )
