"""Staff dashboard pages: 404 for everyone but staff; figures; audited actions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from accelerator.models import Tenant
from accelerator.services import tenant_mark_exhausted, tenant_start
from dashboard.models import StaffAction
from quota.grants import grant_create
from quota.models import Grant
from quota.month import month_summary
from quota.periods import month_start
from quota.units import GB
from quota.usage import UsageDelta, usage_apply
from tests.api.conftest import hour

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant(owner):
    return tenant_start(user=owner)


def _pages(pk: int) -> list[tuple[str, str, dict]]:
    return [
        ("get", "/staff/", {}),
        ("get", "/staff/tenants/", {}),
        ("get", "/staff/tenants/?q=owner", {}),
        ("get", f"/staff/tenants/{pk}/", {}),
        ("get", "/staff/actions/", {}),
        ("post", f"/staff/tenants/{pk}/grant/", {"gigabytes": "5", "reason": "x"}),
        ("post", f"/staff/tenants/{pk}/suspend/", {"reason": "x"}),
        ("post", f"/staff/tenants/{pk}/resume/", {"reason": "x"}),
        ("post", f"/staff/tenants/{pk}/rotate/", {"reason": "x"}),
    ]


def test_every_page_and_action_is_404_for_anonymous_and_non_staff(client, owner, tenant):
    label = tenant.label
    for who in (None, owner):
        if who:
            client.force_login(who)
        for method, url, data in _pages(tenant.pk):
            resp = getattr(client, method)(url, data)
            assert resp.status_code == 404, (who, url, resp.status_code)
            assert b"Staff dashboard" not in resp.content
        client.logout()
    tenant.refresh_from_db()
    assert tenant.label == label and tenant.state == "active"
    assert not Grant.objects.exists() and not StaffAction.objects.exists()


def test_nav_shows_dashboard_link_to_staff_only(client, owner, staff):
    client.force_login(owner)
    page = client.get("/console/").content.decode()
    assert "/console/tokens/" in page and 'href="/staff/"' not in page
    client.force_login(staff)
    assert 'href="/staff/"' in client.get("/console/").content.decode()


def test_overview_shows_totals_chart_top_and_quota_lists(client, staff, owner, stranger, tenant):
    other = tenant_start(user=stranger)
    base = settings.QUOTA_MONTHLY_BYTES
    usage_apply(
        deltas=[
            UsageDelta(tenant.pk, "e1", hour(0), base * 85 // 100, 100, 25),
            UsageDelta(other.pk, "e1", hour(0), 2 * GB, 100, 75),
        ]
    )
    tenant_mark_exhausted(tenant_id=other.pk)
    client.force_login(staff)
    resp = client.get("/staff/")
    assert resp.status_code == 200
    totals = resp.context["totals"]
    assert totals["users"] == 3
    assert totals["active_accelerators"] == 1  # the other one is exhausted
    assert totals["today_bytes"] == base * 85 // 100 + 2 * GB
    assert totals["cache_hit_permille"] == 500
    html = resp.content.decode()
    assert html.count("<rect") == 90
    assert tenant.label in html and f"{owner.email}" in html
    assert [t.label for t in resp.context["top"]] == [tenant.label, other.label]
    near = resp.context["near_quota"]
    assert [n.tenant.pk for n in near] == [tenant.pk]
    assert near[0].percent_used == month_summary(tenant=tenant).percent_used == 85
    assert [t.pk for t in resp.context["exhausted"]] == [other.pk]
    assert resp.context["exhausted_count"] == 1 and resp.context["near_quota_candidates"] == 1
    assert "1 tenant has used at least 80 %" in html
    assert resp.context["signups"][0] == stranger


def test_near_quota_counts_bonus_in_the_allowance(client, staff, tenant):
    base = settings.QUOTA_MONTHLY_BYTES
    usage_apply(deltas=[UsageDelta(tenant.pk, "e1", hour(0), base * 85 // 100, 1, 0)])
    grant_create(tenant=tenant, kind="promo", bytes=base, source_key="big")
    client.force_login(staff)
    assert client.get("/staff/").context["near_quota"] == []


def test_a_debt_carried_in_counts_toward_near_quota_and_shows_on_the_tenant_page(
    client, staff, tenant
):
    base = settings.QUOTA_MONTHLY_BYTES
    last_month = month_start(month_start(timezone.now()) - timedelta(hours=1))
    usage_apply(deltas=[UsageDelta(tenant.pk, "e1", last_month, base + 9 * GB, 1, 0)])
    client.force_login(staff)
    near = client.get("/staff/").context["near_quota"]
    assert [(n.tenant.pk, n.percent_used) for n in near] == [(tenant.pk, 90)]
    html = client.get(f"/staff/tenants/{tenant.pk}/").content.decode()
    assert 'data-testid="tenant-carried"' in html and "Carried over from last month: 9 GB" in html


def test_grant_through_the_page_is_audited_once(client, staff, tenant):
    client.force_login(staff)
    page = client.get(f"/staff/tenants/{tenant.pk}/")
    key = page.context["grant_form"].initial["idempotency_key"]
    data = {"gigabytes": "4", "reason": "apology for outage", "idempotency_key": key}
    for _ in range(2):  # a double submit
        resp = client.post(f"/staff/tenants/{tenant.pk}/grant/", data)
        assert resp.status_code == 302
    grant = Grant.objects.get()
    assert (grant.bytes, grant.kind, grant.created_by) == (4 * GB, "staff", staff)
    action = StaffAction.objects.get()
    assert (action.actor, action.kind, action.reason) == (staff, "grant", "apology for outage")
    detail = client.get(f"/staff/tenants/{tenant.pk}/").content.decode()
    assert "apology for outage" in detail and staff.email in detail
    assert "4 GB" in detail  # the grant is listed, in SI units
    assert detail.count("<rect") == 30  # the tenant's daily chart


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"gigabytes": "four", "reason": "x"}, "gigabytes"),
        ({"gigabytes": "0", "reason": "x"}, "gigabytes"),
        ({"gigabytes": "99999999", "reason": "x"}, "gigabytes"),
        ({"gigabytes": "4", "reason": ""}, "reason"),
        ({"gigabytes": "4", "reason": "   "}, "reason"),
        ({"gigabytes": "4", "reason": "x", "expires_in_days": "-1"}, "expires_in_days"),
        ({"gigabytes": "4", "reason": "x", "idempotency_key": "<bad>"}, "idempotency_key"),
    ],
)
def test_grant_form_refuses_bad_values(client, staff, tenant, data, field):
    client.force_login(staff)
    resp = client.post(f"/staff/tenants/{tenant.pk}/grant/", data)
    assert resp.status_code == 400
    assert resp.context["grant_form"].errors[field]
    assert not Grant.objects.exists() and not StaffAction.objects.exists()


def test_suspend_resume_rotate_pages(client, staff, tenant):
    client.force_login(staff)
    old = tenant.label
    assert client.post(f"/staff/tenants/{tenant.pk}/suspend/", {"reason": ""}).status_code == 400
    tenant.refresh_from_db()
    assert tenant.state == "active"
    assert (
        client.post(f"/staff/tenants/{tenant.pk}/suspend/", {"reason": "spam"}).status_code == 302
    )
    tenant.refresh_from_db()
    assert tenant.state == Tenant.State.SUSPENDED and tenant.suspended_reason == "spam"
    assert client.post(f"/staff/tenants/{tenant.pk}/resume/", {"reason": "ok"}).status_code == 302
    assert client.post(f"/staff/tenants/{tenant.pk}/rotate/", {"reason": "leak"}).status_code == 302
    tenant.refresh_from_db()
    assert tenant.state == "active" and tenant.label != old
    assert list(StaffAction.objects.order_by("id").values_list("kind", flat=True)) == [
        "suspend",
        "resume",
        "rotate",
    ]
    audit = client.get("/staff/actions/").content.decode()
    assert f"{old} → {tenant.label}" in audit
    assert client.get("/staff/tenants/999999/").status_code == 404


def test_tenant_search(client, staff, tenant, stranger):
    tenant_start(user=stranger)
    client.force_login(staff)
    page = client.get("/staff/tenants/", {"q": "OWNER@example"}).context["page"]
    assert [t.pk for t in page] == [tenant.pk]
    page = client.get("/staff/tenants/", {"q": tenant.label.upper()}).context["page"]
    assert [t.pk for t in page] == [tenant.pk]
    assert client.get("/staff/tenants/", {"page": "abc"}).status_code == 200


def test_admin_shows_the_ledger_read_only(client, django_user_model, tenant):
    admin = django_user_model.objects.create_superuser(email="root@example.com", password="x")
    grant_create(tenant=tenant, kind="promo", bytes=5, source_key="adm")
    usage_apply(deltas=[UsageDelta(tenant.pk, "e1", hour(0), 5, 1, 0)])
    client.force_login(admin)
    grant = Grant.objects.get()
    assert client.get("/admin/quota/grant/").status_code == 200
    assert client.get("/admin/quota/usagebucket/").status_code == 200
    assert client.get("/admin/quota/grant/add/").status_code == 403
    resp = client.post(f"/admin/quota/grant/{grant.pk}/change/", {"bytes": 10**12})
    assert resp.status_code == 403 or Grant.objects.get().bytes == 5
    assert client.post(f"/admin/quota/grant/{grant.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Grant.objects.get().bytes == 5
    assert client.get("/admin/dashboard/staffaction/").status_code == 200
    assert client.get("/admin/api/personalaccesstoken/").status_code == 200
    assert client.get("/admin/ingest/edgeingest/").status_code == 200
    assert client.get("/admin/ingest/edgeingest/add/").status_code == 403


def test_traffic_figures_are_cached_but_actions_show_at_once(client, staff, tenant):
    client.force_login(staff)
    client.get("/staff/")
    usage_apply(deltas=[UsageDelta(tenant.pk, "e1", hour(0), 777, 1, 0)])
    # Within DASHBOARD_CACHE_SECONDS the traffic figures are those computed before.
    assert client.get("/staff/").context["totals"]["today_bytes"] == 0
    client.post(f"/staff/tenants/{tenant.pk}/suspend/", {"reason": "now"})
    assert client.get("/staff/").context["totals"]["suspended"] == 1
    assert timezone.now() - client.get("/staff/").context["computed_at"] < timedelta(minutes=1)


def test_credited_invites_are_listed(client, staff, owner, stranger):
    from django.core.management import call_command

    from accounts.models import Invite

    Invite.objects.create(inviter=owner, invitee=stranger, code="c" * 12)
    client.force_login(staff)
    assert client.get("/staff/").context["credited_invites"] == []
    Invite.objects.update(credited_at=timezone.now(), inviter_bytes=2 * GB)
    # Shown from the next refresh of the figures (at most DASHBOARD_CACHE_SECONDS later).
    call_command("dashboard_refresh")
    resp = client.get("/staff/")
    assert stranger.email in resp.content.decode()
    rows = resp.context["credited_invites"]
    assert [(r["inviter"], r["invitee"]) for r in rows] == [(owner.email, stranger.email)]


def test_ingest_health_and_unknown_labels_from_a_real_log(client, staff, tenant, tmp_path):
    """A real access log through the ingest app: usage, a malformed line, an unknown label."""
    import json
    import time

    from ingest.services import ingest_edge

    def line(label: str, nbytes: int, rid: str) -> str:
        return json.dumps(
            {
                "ts": time.time(),
                "edge": "edge-a",
                "tenant": label,
                "host": f"{label}.m.localhost",
                "method": "GET",
                "uri": "/v2/library/nginx/blobs/sha256:" + "a" * 64,
                "status": 200,
                "bytes_sent": nbytes + 300,
                "body_bytes_sent": nbytes,
                "completion": "OK",
                "request_time": 0.01,
                "request_id": rid,
                "cache": "HIT",
            }
        )

    log = tmp_path / "access.log"
    log.write_text(
        "\n".join(
            [
                line(tenant.label, 1000, "1" * 32),
                '{"ts": broken',
                line("nosuchlabel", 50, "2" * 32),
                line("nosuchlabel", 70, "3" * 32),
            ]
        )
        + "\n"
    )
    ingest_edge(edge="edge-a", path=log, enforce=False)
    client.force_login(staff)
    resp = client.get("/staff/")
    health = resp.context["ingest_health"]
    assert [(h["row"].edge, h["row"].lines_total, h["row"].malformed_total) for h in health] == [
        ("edge-a", 3, 1)
    ]
    assert sum(health[0]["malformed"].values()) == 1
    unknown = resp.context["unknown_labels"]
    assert [(u.label, u.requests) for u in unknown] == [("nosuchlabel", 2)]
    html = resp.content.decode()
    assert "nosuchlabel" in html and "broken" in html
    assert resp.context["totals"]["today_bytes"] == 1000


def test_refresh_command_and_task_update_the_cached_figures(client, staff, tenant):
    from django.core.management import call_command

    from dashboard.tasks import dashboard_refresh

    client.force_login(staff)
    assert client.get("/staff/").context["totals"]["today_bytes"] == 0
    usage_apply(deltas=[UsageDelta(tenant.pk, "e1", hour(0), 500, 1, 0)])
    call_command("dashboard_refresh")
    assert client.get("/staff/").context["totals"]["today_bytes"] == 500
    usage_apply(deltas=[UsageDelta(tenant.pk, "e1", hour(0), 100, 1, 0)])
    dashboard_refresh.apply()
    assert client.get("/staff/").context["totals"]["today_bytes"] == 600


def test_stale_figures_are_served_while_another_process_recomputes(client, staff, tenant):
    from django.core.cache import cache

    from dashboard import selectors

    client.force_login(staff)
    old = timezone.now() - timedelta(minutes=5)
    selectors.dashboard_traffic(now=old)
    data = cache.get(selectors._CACHE_KEY)
    data["computed_at"] = old
    cache.set(selectors._CACHE_KEY, data, 600)
    cache.add(selectors._LOCK_KEY, 1, 60)  # someone else is recomputing
    assert client.get("/staff/").context["computed_at"] == old
    cache.delete(selectors._LOCK_KEY)
    assert client.get("/staff/").context["computed_at"] > old


def test_a_cold_request_waits_for_the_computation_already_running(
    client, staff, tenant, monkeypatch
):
    from django.core.cache import cache

    from dashboard import selectors

    client.force_login(staff)
    cache.add(selectors._LOCK_KEY, 1, 60)  # another process has started the scan
    waits = []

    def other_process_finishes(seconds):
        waits.append(seconds)
        if len(waits) == 3:
            selectors.dashboard_traffic(fresh=True)

    monkeypatch.setattr(selectors, "sleep", other_process_finishes)
    resp = client.get("/staff/")
    assert resp.status_code == 200 and len(waits) == 3
    assert resp.context["computed_at"] == cache.get(selectors._CACHE_KEY)["computed_at"]


def test_a_forced_refresh_leaves_another_process_lock_alone(tenant):
    from django.core.cache import cache

    from dashboard import selectors

    cache.add(selectors._LOCK_KEY, 1, 60)  # a request is recomputing the figures
    selectors.dashboard_traffic(fresh=True)  # the beat task meanwhile
    assert cache.get(selectors._LOCK_KEY) == 1
    cache.delete(selectors._LOCK_KEY)


def test_figures_html_is_rendered_once_per_refresh(client, staff, tenant):
    from django.core.management import call_command

    def renders(resp) -> int:
        return [t.name for t in resp.templates].count("dashboard/_figures.html")

    client.force_login(staff)
    first = client.get("/staff/")
    assert renders(first) == 1 and "No traffic this month." in first.content.decode()
    usage_apply(deltas=[UsageDelta(tenant.pk, "e1", hour(0), 5 * GB, 1, 0)])
    again = client.get("/staff/")  # the same figures: their HTML from the cache
    assert renders(again) == 0 and "No traffic this month." in again.content.decode()
    call_command("dashboard_refresh")
    fresh = client.get("/staff/")
    assert renders(fresh) == 1
    assert "No traffic this month." not in fresh.content.decode()
    assert tenant.label in fresh.content.decode()
    assert renders(client.get("/staff/")) == 0
