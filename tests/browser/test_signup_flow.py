"""A person in Chromium: sign up, verify, log in, start, copy, rotate, log out."""

from __future__ import annotations

import re

import pytest
from django.core import mail

from accelerator.models import RetiredLabel, Tenant
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_signup_to_accelerator_in_a_browser(page, live_server):
    page.goto("/")
    page.get_by_role("link", name="Sign up free").click()
    page.fill("input[name=email]", "Dev@Example.com")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.get_by_role("button", name="Sign Up").click()
    page.wait_for_url("**/accounts/confirm-email/")
    assert "Verify Your Email Address" in page.content()

    # The verification mail: follow its link and confirm.
    assert len(mail.outbox) == 1
    link = re.search(r"(https?://\S+/accounts/confirm-email/\S+/)", mail.outbox[0].body).group(1)
    page.goto(link)
    page.get_by_role("button", name="Confirm").click()

    page.goto("/accounts/login/")
    page.fill("input[name=login]", "dev@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/console/")

    page.get_by_test_id("start").click()
    url = page.get_by_test_id("mirror-url").inner_text()
    tenant = Tenant.objects.get(user__email="dev@example.com")
    assert url == f"http://{tenant.label}.m.localhost:8480"

    page.get_by_test_id("copy-url").click()
    assert page.evaluate("navigator.clipboard.readText()") == url

    # Each client's snippet is one click away and carries the URL.
    page.get_by_role("tab", name="containerd (every registry)").click()
    assert url in page.get_by_test_id("snippet-containerd").inner_text()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("rotate").click()
    page.wait_for_selector("text=Your old address stops working within")
    new_url = page.get_by_test_id("mirror-url").inner_text()
    assert new_url != url
    assert RetiredLabel.objects.filter(label=tenant.label).exists()

    page.get_by_test_id("logout").click()
    page.wait_for_url(f"{live_server.url}/")
    page.goto("/console/")
    assert "/accounts/login/" in page.url


def test_dismissing_the_rotate_confirmation_keeps_the_url(page, owner):
    from accelerator.services import tenant_start

    label = tenant_start(user=owner).label
    page.goto("/accounts/login/")
    page.fill("input[name=login]", owner.email)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/console/")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_test_id("rotate").click()
    page.wait_for_timeout(300)
    assert Tenant.objects.get(user=owner).label == label
