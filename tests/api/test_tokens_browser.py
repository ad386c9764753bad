"""A person in Chromium creates a token on the console page, a script uses it, they revoke it."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_create_use_and_revoke_a_token(page, live_server, owner):
    page.goto("/accounts/login/")
    page.fill("input[name=login]", owner.email)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/console/")
    page.get_by_test_id("nav-tokens").click()
    form = page.get_by_test_id("token-form")
    form.get_by_label("Name").fill("deploy script")
    form.get_by_label("Expires in (days)").fill("30")
    form.get_by_label("write: start, rotate, invite and other changes").check()
    form.get_by_role("button", name="Create token").click()
    # Minting asks for the password again (allauth's re-authentication), then carries on.
    page.wait_for_url("**/accounts/reauthenticate/**")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    secret = page.get_by_test_id("token-secret").inner_text()
    assert secret.startswith("mat_")
    assert page.get_by_test_id("new-token-scopes").inner_text() == "read write"

    # A script (no browser session) uses it.
    script = page.context.browser.new_context(base_url=live_server.url)
    me = script.request.get("/api/v1/me/", headers={"Authorization": f"Bearer {secret}"})
    assert me.status == 200 and me.json()["email"] == owner.email

    page.goto("/console/tokens/")
    assert secret not in page.content()  # shown once
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("token-list").get_by_role("button", name="Revoke").click()
    page.wait_for_url("**/console/tokens/")
    assert "revoked" in page.get_by_test_id("token-list").inner_text()
    gone = script.request.get("/api/v1/me/", headers={"Authorization": f"Bearer {secret}"})
    assert gone.status == 401
    script.close()
