"""Two-factor sign-in for everyone (allauth.mfa): TOTP enrolment, login with a code and with
a recovery code; and staff need it in production (issue 14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.db import connection
from django.test import override_settings

from tests.selfservice.conftest import password_login, totp_code
from tests.test_settings import NOT_INHERITED, PRODUCTION_ENV

pytestmark = pytest.mark.django_db


def test_enrolment_from_the_account_page(logged_in, owner):
    page = logged_in.get("/account/")
    assert b"/accounts/2fa/" in page.content
    form = logged_in.get("/accounts/2fa/totp/activate/")
    assert form.status_code == 200
    assert b"data:image/svg+xml" in form.content  # the QR code (qrcode)
    secret = logged_in.session["mfa.totp.secret"]
    wrong = logged_in.post("/accounts/2fa/totp/activate/", {"code": "000000x"})
    assert wrong.status_code == 200 and not Authenticator.objects.filter(user=owner).exists()
    done = logged_in.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret)})
    assert done.status_code == 302
    assert Authenticator.objects.filter(user=owner, type="totp").exists()
    assert b"2fa-state" in logged_in.get("/account/").content
    assert "On:" in logged_in.get("/account/").content.decode()


def _enrolled(owner) -> str:
    secret = generate_totp_secret()
    TOTP.activate(owner, secret)
    return secret


def test_login_asks_for_the_code_once_enabled(client, owner):
    secret = _enrolled(owner)
    resp = password_login(client, owner.email)
    assert resp.status_code == 302 and resp["Location"] == "/accounts/2fa/authenticate/"
    assert "_auth_user_id" not in client.session  # the password alone is not a login
    assert client.get("/console/").status_code == 302
    bad = client.post("/accounts/2fa/authenticate/", {"code": "123456"})
    assert bad.status_code == 200 and "_auth_user_id" not in client.session
    ok = client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert ok.status_code == 302 and client.get("/console/").status_code == 200


def test_login_with_a_recovery_code_once(client, owner):
    _enrolled(owner)
    codes = RecoveryCodes.activate(owner).get_unused_codes()
    password_login(client, owner.email)
    ok = client.post("/accounts/2fa/authenticate/", {"code": codes[0]})
    assert ok.status_code == 302 and client.get("/console/").status_code == 200
    client.post("/accounts/logout/")
    password_login(client, owner.email)
    again = client.post("/accounts/2fa/authenticate/", {"code": codes[0]})
    assert again.status_code == 200 and "_auth_user_id" not in client.session


@pytest.mark.parametrize("code", ["", "1" * 5000, "abc\x00", "' OR 1=1 --", "１２３４５６"])
def test_hostile_codes_are_refused(client, owner, code):
    _enrolled(owner)
    password_login(client, owner.email)
    resp = client.post("/accounts/2fa/authenticate/", {"code": code})
    assert resp.status_code == 200 and "_auth_user_id" not in client.session


# --- staff need TOTP where STAFF_MFA_REQUIRED -------------------------------------------------
@override_settings(STAFF_MFA_REQUIRED=True)
@pytest.mark.parametrize("path", ["/staff/", "/staff/tenants/", "/admin/", "/admin/accounts/user/"])
def test_staff_without_totp_cannot_reach_staff_pages(client, staff, path):
    password_login(client, staff.email)
    resp = client.get(path)
    assert resp.status_code == 302 and resp["Location"] == "/accounts/2fa/totp/activate/"


@override_settings(STAFF_MFA_REQUIRED=True)
def test_staff_with_totp_but_a_password_only_session_must_give_a_code(client, staff):
    secret = _enrolled(staff)
    client.force_login(staff)  # e.g. through /admin/login/: no second factor recorded
    resp = client.get("/staff/")
    assert resp.status_code == 302 and resp["Location"].startswith("/accounts/2fa/reauthenticate/")
    client.post("/accounts/2fa/reauthenticate/", {"code": totp_code(secret)})
    assert client.get("/staff/").status_code == 200


@override_settings(STAFF_MFA_REQUIRED=True)
def test_staff_who_logged_in_with_totp_reach_staff_pages(client, staff):
    secret = _enrolled(staff)
    password_login(client, staff.email)
    client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert client.get("/staff/").status_code == 200
    assert client.get("/admin/").status_code == 200


@override_settings(STAFF_MFA_REQUIRED=True)
def test_users_are_not_affected(logged_in):
    assert logged_in.get("/console/").status_code == 200
    assert logged_in.get("/staff/").status_code == 404  # not staff: no such page


def test_without_the_requirement_staff_pages_open_as_before(client, staff):
    password_login(client, staff.email)
    assert client.get("/staff/").status_code == 200


PROBE = """
import django
django.setup()
from django.conf import settings
from django.test import Client
from accounts.models import User
client = Client()
client.force_login(User.objects.get(email="staff@example.com"))
for path in ("/staff/", "/admin/"):
    resp = client.get(path, secure=True)
    print(path, resp.status_code, resp.get("Location"))
print("required", settings.STAFF_MFA_REQUIRED)
"""


@pytest.mark.django_db(transaction=True)
def test_production_settings_keep_staff_without_totp_out(staff):
    """The real production settings, in their own process, against this test database."""
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    clean = {
        k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV and k not in NOT_INHERITED
    }
    env = {
        **clean,
        **PRODUCTION_ENV,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": url,
        "REDIS_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/1"),
        "DJANGO_ALLOWED_HOSTS": "testserver",
    }
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "required True" in done.stdout
    assert "/staff/ 302 /accounts/2fa/totp/activate/" in done.stdout
    assert "/admin/ 302 /accounts/2fa/totp/activate/" in done.stdout
