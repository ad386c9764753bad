"""In Chromium: switch the language with the selector and use the console in Chinese."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD
from tests.i18n.conftest import ZH

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_visitor_and_user_switch_to_chinese_with_the_selector(page, owner):
    # A visitor whose browser asks for English.
    page.goto("/")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_test_id("language").input_value() == "en"
    with page.expect_navigation():
        page.get_by_test_id("language").select_option(ZH)  # submits by itself
    assert page.locator("html").get_attribute("lang") == ZH
    assert page.get_by_role("link", name="免费注册").is_visible()
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    assert cookies["django_language"] == ZH

    # Logging in keeps Chinese (the cookie); the console is in Chinese.
    page.get_by_role("link", name="登录").first.click()
    page.fill("input[name=login]", owner.email)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form button[type=submit]").last.click()
    page.wait_for_url("**/console/")
    assert page.get_by_role("heading", name="我的加速器").is_visible()
    page.get_by_test_id("start").click()
    assert page.get_by_role("heading", name="您的加速地址").is_visible()
    assert page.get_by_role("heading", name="本月流量").is_visible()
    assert page.get_by_test_id("copy-url").inner_text() == "复制"

    # Switching while logged in is saved on the account: a fresh browser (no cookie) that
    # logs in sees the console in the saved language.
    with page.expect_navigation():
        page.get_by_test_id("language").select_option("en")
    assert page.get_by_role("heading", name="Your mirror address").is_visible()
    owner.refresh_from_db()
    assert owner.language == "en"
    with page.expect_navigation():
        page.get_by_test_id("language").select_option(ZH)
    assert page.url.endswith("/console/")  # back where the switch was made
    owner.refresh_from_db()
    assert owner.language == ZH

    fresh = page.context.browser.new_context(base_url=page.url.split("/console/")[0])
    try:
        other = fresh.new_page()
        other.goto("/accounts/login/")
        assert other.locator("html").get_attribute("lang") == "en"
        other.fill("input[name=login]", owner.email)
        other.fill("input[name=password]", PASSWORD)
        other.locator("form button[type=submit]").last.click()
        other.wait_for_url("**/console/")
        assert other.locator("html").get_attribute("lang") == ZH
        assert other.get_by_role("heading", name="您的加速地址").is_visible()
    finally:
        fresh.close()
