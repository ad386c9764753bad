"""Personal access tokens: several per user, named, shown once, stored as a sha256 digest."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from api.tokens import SCOPES, scopes_parse


class PersonalAccessToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access_tokens"
    )
    name = models.CharField(_("name"), max_length=100)
    # The first characters of the secret, kept so a user can tell tokens apart; not secret.
    prefix = models.CharField(max_length=16)
    # sha256 of the whole secret. The secret has 256 bits of entropy, so a plain hash is
    # enough; a slow password hash would cost a request's budget for nothing.
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(_("expires at"))
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Space-separated subset of api.tokens.SCOPES (read, write, staff); see api/permissions.py.
    scopes = models.CharField(_("scopes"), max_length=32, default="read")

    class Meta:
        indexes = [models.Index(fields=["user", "created_at"], name="pat_user_created_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def scope_set(self) -> frozenset[str]:
        return scopes_parse(self.scopes)

    @property
    def scope_list(self) -> list[str]:
        return [scope for scope in SCOPES if scope in self.scope_set]
