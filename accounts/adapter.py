"""allauth's hooks: address cleaning, the invite at sign-up, the sign-up IP, and the language
and recipient of allauth's emails."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter, get_adapter
from django import forms
from django.core.exceptions import PermissionDenied
from django.utils import translation
from django.utils.translation import gettext as _

from accounts.language import language_for_user, language_pick
from accounts.selectors import user_for_mailbox

MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit, and the column's size
MAX_LOCAL_PART_LENGTH = 64


class AccountAdapter(DefaultAccountAdapter):
    def clean_email(self, email: str) -> str:
        """Lower-case every address (one mailbox, one account) and refuse over-long ones.

        allauth would otherwise cut an over-long address to the column's size and store a
        different, wrong address.
        """
        email = super().clean_email(email).strip().lower()
        local = email.rpartition("@")[0]
        if len(email) > MAX_EMAIL_LENGTH or len(local) > MAX_LOCAL_PART_LENGTH:
            raise forms.ValidationError(_("This email address is too long."))
        return email

    def is_open_for_signup(self, request) -> bool:
        """Also where sign-up learns `?invite=<code>` (allauth asks this on every visit)."""
        code = request.GET.get("invite") if request.method == "GET" else None
        if code is not None:
            from accounts.invite_flow import invite_remember

            invite_remember(request=request, code=code)
        return super().is_open_for_signup(request)

    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        """Verification and password-reset emails in the account's language, if it has one."""
        user = context.get("user")
        if user is None or not getattr(user, "language", ""):
            return super().send_mail(template_prefix, email, context)
        with translation.override(language_for_user(user)):
            return super().send_mail(template_prefix, email, context)

    def send_account_already_exists_mail(self, email: str) -> None:
        """A sign-up (or added address) for a mailbox that has an account: the mail goes to
        the account's own address, in its language, whichever alias was typed."""
        owner = user_for_mailbox(email=email)
        if owner is None:
            return super().send_account_already_exists_mail(email)
        with translation.override(language_for_user(owner)):
            return super().send_account_already_exists_mail(owner.email)

    def save_user(self, request, user, form, commit=True):
        """Record the invite the visitor came with, once the account exists.

        The account keeps the language it was created in (the selector changes it later), so
        emails sent by tasks, such as the quota warnings, arrive in that language.
        """
        if not user.language:
            user.language = language_pick(translation.get_language())
        if request is not None and user.signup_ip is None:
            user.signup_ip = _client_ip(request)
        user = super().save_user(request, user, form, commit=commit)
        if commit and request is not None:
            from accounts.invite_flow import invite_record_signup

            invite_record_signup(request=request, user=user)
        return user


def _client_ip(request) -> str | None:
    """The sign-up's client address: allauth's, the one its rate limits key on
    (TRUSTED_PROXY_COUNT decides which X-Forwarded-For entry is the client's). None when
    there is no valid one."""
    try:
        return get_adapter(request).get_client_ip(request)
    except PermissionDenied:
        return None
