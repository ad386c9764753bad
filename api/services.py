"""Writes of the api app: personal access tokens."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from api.models import PersonalAccessToken
from api.tokens import (
    DISPLAY_PREFIX_LEN,
    SCOPES,
    scopes_format,
    token_digest,
    token_generate,
)


@dataclass(frozen=True)
class IssuedToken:
    token: PersonalAccessToken
    secret: str  # shown to the user once, never stored


class TokenScopeRefused(Exception):
    def __init__(self, message) -> None:
        self.message = message
        super().__init__(str(message))


class TokenLimitReached(Exception):
    def __init__(self) -> None:
        self.message = _(
            "You have %(n)d live tokens, the most allowed. Revoke one you no longer use."
        ) % {"n": settings.API_TOKEN_MAX_LIVE}
        super().__init__(str(self.message))


def token_create(
    *, user: User, name: str, expires_at: datetime, scopes: Iterable[str]
) -> IssuedToken:
    """A new token for `user` with `scopes`. Only its digest is stored; the secret is returned
    once.

    Raises TokenScopeRefused for no scope, an unknown one, or `staff` for a non-staff user;
    TokenLimitReached when the user already has API_TOKEN_MAX_LIVE live tokens.
    """
    wanted = frozenset(scopes)
    if not wanted or not wanted <= set(SCOPES):
        raise TokenScopeRefused(_("Choose one or more of the scopes read, write and staff."))
    if "staff" in wanted and not user.is_staff:
        raise TokenScopeRefused(_("Only staff can give a token the staff scope."))
    with transaction.atomic():
        # The user's row serializes concurrent creations, so the limit cannot be overrun.
        User.objects.select_for_update().filter(pk=user.pk).values_list("pk").first()
        live = PersonalAccessToken.objects.filter(
            user=user, revoked_at__isnull=True, expires_at__gt=timezone.now()
        ).count()
        if live >= settings.API_TOKEN_MAX_LIVE:
            raise TokenLimitReached()
        return _token_insert(user=user, name=name, expires_at=expires_at, scopes=wanted)


def _token_insert(
    *, user: User, name: str, expires_at: datetime, scopes: frozenset[str]
) -> IssuedToken:
    secret = token_generate()
    token = PersonalAccessToken.objects.create(
        user=user,
        name=name,
        prefix=secret[:DISPLAY_PREFIX_LEN],
        digest=token_digest(secret),
        expires_at=expires_at,
        scopes=scopes_format(scopes),
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


def token_revoke_all(*, user: User, now: datetime | None = None) -> list[int]:
    """Revoke every token of `user` not revoked yet (a password change or reset: whoever knew
    the old password may have minted one; an account deletion). Idempotent; returns the ids
    revoked now, so an undone deletion can restore exactly those."""
    live = PersonalAccessToken.objects.filter(user=user, revoked_at__isnull=True)
    ids = list(live.values_list("pk", flat=True))
    PersonalAccessToken.objects.filter(pk__in=ids).update(revoked_at=now or timezone.now())
    return ids


def token_touch(*, token: PersonalAccessToken, now: datetime) -> None:
    """Record use, at most once a minute per token so reads do not become writes."""
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        PersonalAccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
