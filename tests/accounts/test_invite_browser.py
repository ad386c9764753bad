"""Chromium: an invite from the link to the credit, with usage written through the ledger."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.utils import timezone

from accelerator.models import Tenant
from accounts.models import Invite
from quota.periods import floor_hour
from quota.settlement import usage_after_batch
from tests.conftest import PASSWORD
from tests.quota.conftest import GB, use

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def log_in(page, email):
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/console/")


def test_invite_from_link_to_credit(page, chromium, live_server, owner, eager_tasks, settings):
    # The real-use thresholds have their own tests (test_invite_rules.py).
    settings.INVITE_MIN_USAGE_BYTES, settings.INVITE_MIN_AGE_SECONDS = 1, 0
    # The inviter finds the link through the nav, copies it and sends one invite email.
    log_in(page, owner.email)
    page.get_by_test_id("nav-invites").click()
    page.wait_for_url("**/invites/")
    link = page.get_by_test_id("invite-link").inner_text()
    assert re.fullmatch(re.escape(live_server.url) + r"/invite/[A-Za-z0-9_-]{12}", link)
    page.get_by_test_id("copy-invite").click()
    assert page.evaluate("navigator.clipboard.readText()") == link
    page.get_by_test_id("invite-email").fill("owner@example.com")
    page.get_by_test_id("send-invite").click()
    assert "You cannot invite yourself." in page.content()
    page.get_by_test_id("invite-email").fill("friend@example.com")
    page.get_by_test_id("send-invite").click()
    page.wait_for_selector("text=Invite sent to friend@example.com")
    invite_mail = mail.outbox[-1]
    assert invite_mail.to == ["friend@example.com"] and link in invite_mail.body

    # The friend follows the link, signs up, confirms the address and starts an accelerator.
    friend_context = chromium.new_context(base_url=live_server.url)
    try:
        friend = friend_context.new_page()
        friend.set_default_timeout(15_000)
        friend.goto(link)
        friend.wait_for_url("**/accounts/signup/")
        assert "ow***@example.com invited you" in friend.content()
        friend.fill("input[name=email]", "friend@example.com")
        friend.fill("input[name=password1]", PASSWORD)
        friend.fill("input[name=password2]", PASSWORD)
        friend.get_by_role("button", name="Sign Up").click()
        friend.wait_for_url("**/accounts/confirm-email/")
        body = mail.outbox[-1].body
        confirm = re.search(r"(https?://\S+/accounts/confirm-email/\S+/)", body).group(1)
        friend.goto(confirm)
        friend.get_by_role("button", name="Confirm").click()
        log_in(friend, "friend@example.com")
        friend.get_by_test_id("start").click()
        friend.wait_for_selector("[data-testid=quota]")
        assert friend.get_by_test_id("no-grants").is_visible()

        # Signed up and verified, not credited yet.
        page.reload()
        assert "1 signed up, 0 of at most 50 credited" in page.content()
        assert page.get_by_test_id("invitee-credited").inner_text() == "after the first pull"

        # The first pull, as ingestion reports it to the ledger.
        tenant = Tenant.objects.get(user__email="friend@example.com")
        use(tenant, floor_hour(timezone.now()), 123_000_000)
        usage_after_batch(tenant_ids=[tenant.pk])
        usage_after_batch(tenant_ids=[tenant.pk])

        friend.reload()
        assert friend.get_by_test_id("quota-used").inner_text() == "123 MB"
        assert friend.get_by_test_id("quota-bonus").inner_text() == "1 GB"
        assert "welcome bonus" in friend.get_by_test_id("grants").inner_text()
        page.reload()
        assert "1 signed up, 1 of at most 50 credited, 2 GB earned" in page.content()
        page.get_by_test_id("nav-invites").wait_for()
        page.goto("/console/")
        assert page.get_by_test_id("quota-bonus").inner_text() == "2 GB"
        assert "invite bonus" in page.get_by_test_id("grants").inner_text()
    finally:
        friend_context.close()
    invite = Invite.objects.get()
    assert (invite.inviter_bytes, invite.invitee_bytes) == (2 * GB, 1 * GB)
