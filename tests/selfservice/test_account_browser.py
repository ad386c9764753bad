"""The account page in Chromium, in both languages: delete with re-authentication and the
typed address, undo from the email; two-factor enrolment and login with a code."""

from __future__ import annotations

import re

import pytest
from django.core import mail

from tests.conftest import PASSWORD
from tests.selfservice.conftest import totp_code

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _login(page, email):
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").first.click()


def _reauthenticate(page):
    page.wait_for_url("**/accounts/reauthenticate/**")
    page.fill("input[name=password]", PASSWORD)
    page.locator("main form button[type=submit]").first.click()


def test_delete_and_undo_in_english(page, live_server, owner):
    _login(page, owner.email)
    page.wait_for_url("**/console/")
    page.get_by_test_id("nav-account").click()
    page.wait_for_url("**/account/")
    for section in ("account-email", "account-2fa", "account-export", "account-delete"):
        assert page.get_by_test_id(section).is_visible()
    assert "Your account" in page.content()
    page.get_by_test_id("delete-account").click()
    _reauthenticate(page)
    page.wait_for_url("**/account/delete/")
    page.get_by_test_id("delete-confirm").fill("not-me@example.com")
    page.get_by_test_id("delete-submit").click()
    assert "This is not your account" in page.content()
    page.get_by_test_id("delete-confirm").fill(owner.email)
    page.get_by_test_id("delete-submit").click()
    page.wait_for_url("**/account/deleted/")
    assert "deactivated" in page.get_by_test_id("deleted-message").inner_text()
    owner.refresh_from_db()
    assert not owner.is_active
    # Logged out and locked out.
    page.goto("/console/")
    assert "/accounts/login/" in page.url
    # The email's link brings it back.
    link = re.search(r"https?://\S+(/account/undo/\S+/)", mail.outbox[-1].body).group(1)
    page.goto(link)
    page.get_by_test_id("undo-submit").click()
    page.wait_for_url("**/accounts/login/")
    assert "restored" in page.content()
    _login(page, owner.email)
    page.wait_for_url("**/console/")


def test_two_factor_in_chinese(page, live_server, owner):
    owner.language = "zh-hans"
    owner.save(update_fields=["language"])
    _login(page, owner.email)
    page.wait_for_url("**/console/")
    page.get_by_test_id("nav-account").click()
    page.wait_for_url("**/account/")
    assert "你的账户" in page.content() and "删除账户" in page.content()
    assert "未开启" in page.get_by_test_id("2fa-state").inner_text()
    page.get_by_test_id("manage-2fa").click()
    page.wait_for_url("**/accounts/2fa/")
    page.goto("/accounts/2fa/totp/activate/")
    _reauthenticate(page)
    page.wait_for_url("**/accounts/2fa/totp/activate/")
    assert page.locator("img[src^='data:image/svg+xml']").is_visible()  # the QR code
    secret = page.locator("#authenticator_secret").input_value()
    page.fill("input[name=code]", totp_code(secret))
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_url(re.compile(r".*/accounts/2fa/.*"))
    page.goto("/account/")
    assert "已开启" in page.get_by_test_id("2fa-state").inner_text()
    # The next login asks for a code.
    page.get_by_test_id("logout").click()
    _login(page, owner.email)
    page.wait_for_url("**/accounts/2fa/authenticate/")
    page.fill("input[name=code]", totp_code(secret))
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_url("**/console/")
