from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, permissions
from rest_framework.authentication import SessionAuthentication


class StaffOr404(permissions.BasePermission):
    """Staff endpoints do not exist for anyone else: 404, not 403, so they reveal nothing."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_staff):
            raise exceptions.NotFound()
        return True


class SessionOnly(permissions.BasePermission):
    """Token management needs the browser session: a leaked token cannot mint new tokens."""

    message = _("Manage tokens from a logged-in browser session.")

    def has_permission(self, request, view) -> bool:
        return bool(
            request.user
            and request.user.is_authenticated
            and isinstance(request.successful_authenticator, SessionAuthentication)
        )
