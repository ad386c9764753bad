"""Content-Security-Policy: on every page, nothing inline runs, and the browser tests notice
a violation (tests/conftest.py fails any test that causes one)."""

from __future__ import annotations

import pytest

from accelerator.services import tenant_start
from tests import conftest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("path", ["/", "/accounts/login/", "/api/docs/", "/console/"])
def test_every_page_has_a_policy_without_inline_script_or_style(owner_client, path):
    response = owner_client.get(path)
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy


def test_an_injected_inline_script_is_blocked_and_reported(page, live_server):
    page.goto("/accounts/login/")
    # What an injection would do: add a script element to a served page.
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.injected = true'; document.body.appendChild(s); }"
    )
    for _ in range(100):  # bounded wait for the report, an event
        if conftest.CSP_VIOLATIONS:
            break
        page.wait_for_timeout(50)
    assert page.evaluate("() => window.injected") is None
    assert any("script-src" in v for v in conftest.CSP_VIOLATIONS), conftest.CSP_VIOLATIONS
    conftest.CSP_VIOLATIONS.clear()  # the violation this test caused on purpose


def test_the_console_quota_bar_is_drawn_without_inline_style(page, live_server, owner):
    tenant_start(user=owner)
    page.goto("/accounts/login/")
    page.fill("input[name=login]", owner.email)
    page.fill("input[name=password]", conftest.PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/console/")
    bar = page.locator(".quota-fill")
    assert bar.get_attribute("style") == f"width: {bar.get_attribute('data-percent')}%;"


def test_the_api_docs_run_under_the_policy(page, live_server):
    page.goto("/api/docs/")
    page.locator(".swagger-ui .info .title").wait_for()
    assert "Mirror Accelerator API" in page.locator(".swagger-ui .info .title").inner_text()


def test_the_django_admin_runs_under_the_policy(page, live_server, staff, owner):
    staff.is_superuser = True
    staff.save(update_fields=["is_superuser"])
    page.goto("/admin/")
    page.wait_for_url("**/accounts/login/**")  # the admin signs in through allauth's login
    page.fill("input[name=login]", staff.email)
    page.fill("input[name=password]", conftest.PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/admin/")
    for path in [
        "/admin/accounts/user/",
        f"/admin/accounts/user/{owner.pk}/change/",
        "/admin/api/personalaccesstoken/",
        "/admin/accounts/user/?q=owner",
    ]:
        page.goto(path)
        page.locator("#content").wait_for()
    # The change form's widgets (date pickers, the filter) are scripts from files: they ran.
    page.goto(f"/admin/accounts/user/{owner.pk}/change/")
    page.locator("#id_date_joined_0 + .datetimeshortcuts, .datetimeshortcuts").first.wait_for()
