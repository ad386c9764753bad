"""Reads of the api app (tokens). Usage and grants are read through quota.selectors."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from accounts.models import User
from api.models import PersonalAccessToken
from api.tokens import token_digest, token_is_well_formed


def token_list(*, user: User) -> QuerySet[PersonalAccessToken]:
    return PersonalAccessToken.objects.filter(user=user).order_by("-created_at", "-id")


def token_for_secret(*, raw: str, now: datetime) -> PersonalAccessToken | None:
    """The live token with this secret: well formed, known, not revoked, not expired."""
    if not token_is_well_formed(raw):
        return None
    return (
        PersonalAccessToken.objects.select_related("user")
        .filter(
            digest=token_digest(raw),
            revoked_at__isnull=True,
            expires_at__gt=now,
            user__is_active=True,
        )
        .first()
    )
