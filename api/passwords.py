"""A new password revokes every API token: whoever knew the old one may have minted some."""

from __future__ import annotations

from django.utils.translation import gettext as _

from api import services


class NewPasswordRevokesTokens:
    """In AUTH_PASSWORD_VALIDATORS for Django's password_changed() hook, not to judge a
    password. Django calls it after saving a password set with set_password(): the console's
    change and reset, the admin, `manage.py changepassword`. Not after the hash upgrade
    Django makes at a login (the password stays the same)."""

    def validate(self, password, user=None) -> None:
        return None

    def password_changed(self, password, user=None) -> None:
        if user is not None and user.pk is not None:
            services.token_revoke_all(user=user)

    def get_help_text(self) -> str:
        return _("A new password revokes all your API tokens.")
