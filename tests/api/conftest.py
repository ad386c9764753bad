from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accelerator.services import tenant_start
from api.services import token_create
from tests.conftest import PASSWORD


def reauthenticate(client) -> None:
    """Confirm the password again (allauth's re-authentication), as minting a token asks."""
    resp = client.post(reverse("account_reauthenticate"), {"password": PASSWORD})
    assert resp.status_code == 302, resp.content[:500]


@pytest.fixture
def minting_client(owner_client):
    """The owner's browser session, with the recent password check minting needs."""
    reauthenticate(owner_client)
    return owner_client


@pytest.fixture
def owner_tenant(owner):
    return tenant_start(user=owner)


@pytest.fixture
def owner_token(owner):
    return token_create(
        scopes=("read", "write"),
        user=owner,
        name="ci",
        expires_at=timezone.now() + timedelta(days=30),
    ).secret


def hour(days_ago: int = 0, h: int = 0) -> datetime:
    now = timezone.now().astimezone(UTC)
    base = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=days_ago)
    return base + timedelta(hours=h)
