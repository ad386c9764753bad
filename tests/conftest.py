"""Shared fixtures. Tests run on real PostgreSQL and Redis (see scripts/test.sh)."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, why: str) -> None:
    """Skip when a real part is missing on a developer machine; fail under CI=true."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required for this test under CI: {why}")
    pytest.skip(why)


PASSWORD = "correct-horse-battery-9"


def _user(django_user_model, email: str, verified: bool = True):
    from allauth.account.models import EmailAddress

    user = django_user_model.objects.create_user(email=email, password=PASSWORD)
    EmailAddress.objects.create(user=user, email=email, verified=verified, primary=True)
    return user


@pytest.fixture
def owner(django_user_model):
    return _user(django_user_model, "owner@example.com")


@pytest.fixture
def stranger(django_user_model):
    return _user(django_user_model, "stranger@example.com")


@pytest.fixture
def staff(django_user_model):
    user = _user(django_user_model, "staff@example.com")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture(autouse=True)
def _clear_cache():
    """Rate-limit counters live in the cache; each test starts with none."""
    from django.core.cache import cache

    cache.clear()
    yield
