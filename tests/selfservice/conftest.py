from __future__ import annotations

import re
import time

import pytest

from tests.conftest import PASSWORD


def password_login(client, email: str, password: str = PASSWORD):
    """A real login through allauth's form (it records the authentication, which
    re-authentication and the staff second factor read); returns the response."""
    return client.post("/accounts/login/", {"login": email, "password": password})


def totp_code(secret: str, offset: int = 0) -> str:
    from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

    return format_hotp_value(hotp_value(secret, int(time.time()) // 30 + offset))


def undo_link(body: str) -> str:
    return re.search(r"https?://\S+(/account/undo/\S+/)", body).group(1)


def reauthenticate(client, password: str = PASSWORD):
    """allauth's re-authentication (the password again), which deletion asks for."""
    resp = client.post("/accounts/reauthenticate/", {"password": password})
    assert resp.status_code == 302, resp.content[:2000]
    return resp


@pytest.fixture
def logged_in(client, owner):
    """The owner logged in through the form, with a fresh re-authentication."""
    assert password_login(client, owner.email).status_code == 302
    reauthenticate(client)
    return client


@pytest.fixture(autouse=True)
def _tasks_run_inline(eager_tasks):
    """Tasks queued after commit (the deletion email) run in the test's process."""
