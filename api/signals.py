"""A new password revokes every API token: whoever knew the old one may have minted some."""

from __future__ import annotations

from allauth.account.signals import password_changed, password_reset, password_set
from django.dispatch import receiver

from api import services


@receiver(password_changed, dispatch_uid="api_tokens_revoked_on_password_changed")
@receiver(password_reset, dispatch_uid="api_tokens_revoked_on_password_reset")
@receiver(password_set, dispatch_uid="api_tokens_revoked_on_password_set")
def _revoke_tokens(sender, request, user, **kwargs) -> None:
    services.token_revoke_all(user=user)
