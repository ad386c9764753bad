"""The invite code's trip through sign-up: kept in the session from /invite/<code> or
?invite=<code> until allauth saves the new user (accounts.adapter calls these)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest
from django.template.loader import render_to_string

from accounts import services
from accounts.addresses import mask_email
from accounts.models import User

SESSION_KEY = "invite_code"


def invite_remember(*, request: HttpRequest, code: str) -> bool:
    """Check the code for this visitor and keep it for sign-up; tell the visitor either way."""
    user = request.user if request.user.is_authenticated else None
    try:
        inviter = services.invite_check_for_visitor(code=code, user=user)
    except services.InviteRefused as refused:
        request.session.pop(SESSION_KEY, None)
        messages.error(request, refused.message)
        return False
    request.session[SESSION_KEY] = code
    messages.info(request, invited_message(inviter=inviter))
    return True


def invited_message(*, inviter: User) -> str:
    """Rendered from a template, as the invite email is: the bonus is shown with the quota
    app's si_bytes filter, which accounts (below quota) cannot import."""
    context = {
        "inviter": mask_email(inviter.email),
        "bonus": settings.WELCOME_BONUS_BYTES,
    }
    return render_to_string("accounts/invited_message.txt", context).strip()


def invite_record_signup(*, request: HttpRequest, user: User) -> None:
    """After allauth created `user`: record the invite kept in the session, if any."""
    code = request.session.pop(SESSION_KEY, None)
    if not code:
        return
    try:
        services.invite_accept(invitee=user, code=code)
    except services.InviteRefused as refused:
        # Sign-up goes on; only the invite is refused.
        messages.warning(request, refused.message)
