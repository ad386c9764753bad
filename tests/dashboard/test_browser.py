"""Staff in Chromium: log in, read the dashboard, grant traffic and suspend a tenant."""

from __future__ import annotations

import pytest
from django.conf import settings

from accelerator.services import tenant_start
from dashboard.models import StaffAction
from quota.models import Grant
from quota.usage import UsageDelta, usage_apply
from tests.api.conftest import hour
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _login(page, email: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/console/")


def test_non_staff_sees_no_dashboard(page, owner):
    assert page.goto("/staff/").status == 404
    _login(page, owner.email)
    assert page.get_by_test_id("nav-dashboard").count() == 0
    resp = page.goto("/staff/")
    assert resp.status == 404
    assert "Staff dashboard" not in page.content()


def test_staff_reads_dashboard_and_grants_traffic(page, staff, owner):
    tenant = tenant_start(user=owner)
    usage_apply(
        deltas=[
            UsageDelta(tenant.pk, "e1", hour(0), settings.QUOTA_MONTHLY_BYTES * 9 // 10, 40, 10)
        ]
    )
    _login(page, staff.email)
    page.get_by_test_id("nav-dashboard").click()
    page.wait_for_url("**/staff/")
    assert page.get_by_test_id("total-users").inner_text() == "2"
    assert page.get_by_test_id("cache-hit").inner_text() == "25 %"
    assert page.locator("[data-testid=chart] svg rect").count() == 90
    assert tenant.label in page.get_by_test_id("top-tenants").inner_text()
    assert tenant.label in page.get_by_test_id("near-quota").inner_text()

    page.get_by_test_id("near-quota").get_by_role("link", name=tenant.label).click()
    page.wait_for_url(f"**/staff/tenants/{tenant.pk}/")
    assert "90 %" in page.get_by_test_id("tenant-quota").inner_text()
    form = page.get_by_test_id("grant-form")
    form.get_by_label("Traffic (GB)").fill("5")
    form.get_by_label("Reason").fill("goodwill after outage")
    form.get_by_role("button", name="Grant").click()
    page.wait_for_url(f"**/staff/tenants/{tenant.pk}/")
    assert "Granted 5 GB." in page.locator(".messages").inner_text()
    audit = page.get_by_test_id("audit").inner_text()
    assert "goodwill after outage" in audit and staff.email in audit
    grant = Grant.objects.get(tenant=tenant)
    assert grant.bytes == 5 * 10**9 and grant.created_by == staff

    suspend = page.get_by_test_id("suspend-form")
    suspend.get_by_label("Reason").fill("abuse report #7")
    suspend.get_by_role("button", name="Suspend").click()
    page.wait_for_url(f"**/staff/tenants/{tenant.pk}/")
    assert page.get_by_test_id("tenant-state").inner_text() == "suspended"
    tenant.refresh_from_db()
    assert tenant.state == "suspended" and tenant.suspended_reason == "abuse report #7"
    assert list(StaffAction.objects.order_by("id").values_list("kind", "actor__email")) == [
        ("grant", staff.email),
        ("suspend", staff.email),
    ]
