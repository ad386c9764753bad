"""Writes of the api app: personal access tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from accounts.models import User
from api.models import PersonalAccessToken
from api.tokens import DISPLAY_PREFIX_LEN, token_digest, token_generate


@dataclass(frozen=True)
class IssuedToken:
    token: PersonalAccessToken
    secret: str  # shown to the user once, never stored


def token_create(*, user: User, name: str, expires_at: datetime) -> IssuedToken:
    """A new token for `user`. Only its digest is stored; the secret is returned once."""
    secret = token_generate()
    token = PersonalAccessToken.objects.create(
        user=user,
        name=name,
        prefix=secret[:DISPLAY_PREFIX_LEN],
        digest=token_digest(secret),
        expires_at=expires_at,
    )
    return IssuedToken(token=token, secret=secret)


def token_revoke(*, user: User, token_id: int) -> bool:
    """Revoke one of `user`'s tokens. Idempotent; another user's token is never touched.

    Returns False when `user` has no such token.
    """
    token = PersonalAccessToken.objects.filter(user=user, pk=token_id).first()
    if token is None:
        return False
    PersonalAccessToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    return True


def token_touch(*, token: PersonalAccessToken, now: datetime) -> None:
    """Record use, at most once a minute per token so reads do not become writes."""
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        PersonalAccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
