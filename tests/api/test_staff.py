"""Staff API: the dashboard's actions, audited; invisible (404) to everyone else."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accelerator.models import RetiredLabel, Tenant
from api.services import token_create
from dashboard.models import StaffAction
from quota.models import Grant
from quota.month import month_summary
from quota.units import GB
from quota.usage import UsageDelta, usage_apply
from tests.api.conftest import hour

pytestmark = pytest.mark.django_db


def _token(user) -> str:
    return token_create(
        scopes=("read", "write", "staff") if user.is_staff else ("read", "write"),
        user=user,
        name="t",
        expires_at=timezone.now() + timedelta(days=1),
    ).secret


def _staff_urls(pk: int) -> list[tuple[str, str]]:
    base = f"/api/v1/staff/tenants/{pk}/"
    return [
        ("get", "/api/v1/staff/overview/"),
        ("get", "/api/v1/staff/tenants/"),
        ("get", base),
        ("get", "/api/v1/staff/actions/"),
        ("post", base + "grant/"),
        ("post", base + "suspend/"),
        ("post", base + "resume/"),
        ("post", base + "rotate/"),
    ]


def test_staff_endpoints_do_not_exist_for_others(client, owner_tenant, owner, owner_token, api):
    for method, url in _staff_urls(owner_tenant.pk):
        for caller in (api(owner_token), api(None)):
            resp = getattr(caller, method)(
                url, *([{"reason": "x", "gigabytes": 5}] if method == "post" else [])
            )
            assert resp.status_code == 404, (url, resp.status_code)
        client.force_login(owner)
        assert getattr(client, method)(url).status_code == 404
        client.logout()
    owner_tenant.refresh_from_db()
    assert owner_tenant.state == Tenant.State.ACTIVE
    assert not Grant.objects.exists() and not StaffAction.objects.exists()


def test_staff_grant_is_audited_and_idempotent(staff, owner_tenant, api):
    client = api(_token(staff))
    url = f"/api/v1/staff/tenants/{owner_tenant.pk}/grant/"
    body = {"gigabytes": 3, "reason": "support ticket 42", "idempotency_key": "ticket-42-a"}
    first = client.post(url, body)
    assert first.status_code == 201, first.content
    assert client.post(url, body).json()["id"] == first.json()["id"]
    grant = Grant.objects.get(tenant=owner_tenant)
    assert grant.bytes == 3 * GB and grant.kind == Grant.Kind.STAFF and grant.created_by == staff
    action = StaffAction.objects.get()
    assert (action.actor, action.tenant, action.kind) == (staff, owner_tenant, "grant")
    assert action.reason == "support ticket 42" and action.detail["bytes"] == 3 * GB
    assert month_summary(tenant=owner_tenant).bonus_left == 3 * GB
    listed = client.get("/api/v1/staff/actions/").json()["results"]
    assert listed[0]["actor"] == staff.email and listed[0]["tenant_label"] == owner_tenant.label


def test_staff_grant_with_expiry(staff, owner_tenant, api):
    resp = api(_token(staff)).post(
        f"/api/v1/staff/tenants/{owner_tenant.pk}/grant/",
        {"gigabytes": 1, "reason": "trial", "expires_in_days": 7},
    )
    assert resp.status_code == 201
    grant = Grant.objects.get()
    assert timedelta(days=6) < grant.expires_at - timezone.now() <= timedelta(days=7)


def test_staff_suspend_resume_rotate(staff, owner_tenant, api):
    client = api(_token(staff))
    base = f"/api/v1/staff/tenants/{owner_tenant.pk}/"
    assert client.post(base + "suspend/", {"reason": "abuse report"}).status_code == 201
    owner_tenant.refresh_from_db()
    assert owner_tenant.state == "suspended" and owner_tenant.suspended_reason == "abuse report"
    assert client.post(base + "resume/", {"reason": "resolved"}).status_code == 201
    owner_tenant.refresh_from_db()
    assert owner_tenant.state == "active"
    old = owner_tenant.label
    rotated = client.post(base + "rotate/", {"reason": "label leaked"})
    assert rotated.status_code == 201
    owner_tenant.refresh_from_db()
    assert owner_tenant.label != old and RetiredLabel.objects.filter(label=old).exists()
    assert rotated.json()["detail"] == {"old_label": old, "new_label": owner_tenant.label}
    kinds = list(StaffAction.objects.order_by("id").values_list("kind", "reason"))
    assert kinds == [
        ("suspend", "abuse report"),
        ("resume", "resolved"),
        ("rotate", "label leaked"),
    ]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"gigabytes": "lots", "reason": "x"}, {"gigabytes"}),
        ({"gigabytes": 0, "reason": "x"}, {"gigabytes"}),
        ({"gigabytes": -5, "reason": "x"}, {"gigabytes"}),
        ({"gigabytes": 10**9, "reason": "x"}, {"gigabytes"}),
        ({"gigabytes": 1.5, "reason": "x"}, {"gigabytes"}),
        ({"gigabytes": 1}, {"reason"}),
        ({"gigabytes": 1, "reason": "   "}, {"reason"}),
        ({"gigabytes": 1, "reason": "x", "bytes": 5}, {"bytes"}),
        ({"gigabytes": 1, "reason": "x", "expires_in_days": 0}, {"expires_in_days"}),
        ({"gigabytes": 1, "reason": "x", "idempotency_key": "no spaces!"}, {"idempotency_key"}),
    ],
)
def test_staff_grant_bad_values_change_nothing(staff, owner_tenant, api, body, fields):
    resp = api(_token(staff)).post(f"/api/v1/staff/tenants/{owner_tenant.pk}/grant/", body)
    assert resp.status_code == 400
    assert set(resp.json()) == fields, resp.json()
    assert not Grant.objects.exists() and not StaffAction.objects.exists()


def test_staff_actions_need_a_reason_and_an_existing_tenant(staff, owner_tenant, api):
    client = api(_token(staff))
    resp = client.post(f"/api/v1/staff/tenants/{owner_tenant.pk}/suspend/", {})
    assert resp.status_code == 400 and set(resp.json()) == {"reason"}
    assert client.post("/api/v1/staff/tenants/999999/suspend/", {"reason": "x"}).status_code == 404
    owner_tenant.refresh_from_db()
    assert owner_tenant.state == "active" and not StaffAction.objects.exists()


def test_staff_overview_and_tenant_detail(staff, owner_tenant, api):
    usage_apply(deltas=[UsageDelta(owner_tenant.pk, "e1", hour(0), 5 * GB, 10, 4)])
    client = api(_token(staff))
    overview = client.get("/api/v1/staff/overview/").json()
    assert overview["users"] == 2 and overview["active_accelerators"] == 1
    assert overview["today_bytes"] == 5 * GB and overview["month_bytes"] >= 5 * GB
    assert overview["cache_hit_permille"] == 400
    assert len(overview["daily"]) == 90 and overview["daily"][-1]["bytes"] == 5 * GB
    detail = client.get(f"/api/v1/staff/tenants/{owner_tenant.pk}/").json()
    assert detail["tenant"]["label"] == owner_tenant.label
    assert detail["quota"]["used"] == 5 * GB
    found = client.get("/api/v1/staff/tenants/", {"q": "owner@"}).json()
    assert [t["id"] for t in found["results"]] == [owner_tenant.pk]
    assert client.get("/api/v1/staff/tenants/", {"state": "weird"}).status_code == 400


def test_same_idempotency_key_for_two_tenants_grants_both(staff, owner_tenant, stranger, api):
    from accelerator.services import tenant_start

    other = tenant_start(user=stranger)
    client = api(_token(staff))
    body = {"gigabytes": 1, "reason": "r", "idempotency_key": "same-key-1"}
    a = client.post(f"/api/v1/staff/tenants/{owner_tenant.pk}/grant/", body).json()
    b = client.post(f"/api/v1/staff/tenants/{other.pk}/grant/", body).json()
    assert a["id"] != b["id"] and (a["tenant"], b["tenant"]) == (owner_tenant.pk, other.pk)
    assert Grant.objects.count() == 2


def test_staff_rotation_is_not_limited_and_the_tenant_page_lists_rotations(
    staff, owner_tenant, api, client
):
    from accelerator.services import tenant_rotate

    for _ in range(5):
        tenant_rotate(tenant=owner_tenant)
    owner_tenant.refresh_from_db()
    rotated = api(_token(staff)).post(
        f"/api/v1/staff/tenants/{owner_tenant.pk}/rotate/", {"reason": "label leaked"}
    )
    assert rotated.status_code == 201
    assert RetiredLabel.objects.filter(tenant=owner_tenant).count() == 6
    # The user's rotations are on the tenant's page for staff; the staff one is audited too.
    client.force_login(staff)
    body = client.get(f"/staff/tenants/{owner_tenant.pk}/").content.decode()
    for retired in RetiredLabel.objects.filter(tenant=owner_tenant):
        assert f"<code>{retired.label}</code>" in body
    assert StaffAction.objects.filter(kind="rotate", tenant=owner_tenant).count() == 1
