"""The user-facing API: me, accelerator, quota, grants, usage; scoped to the caller's tenant."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from accelerator.models import RetiredLabel, Tenant
from accelerator.services import tenant_start
from api.services import token_create
from quota.grants import grant_create
from quota.models import Grant, UsageBucket
from quota.month import month_summary
from quota.periods import month_start
from quota.usage import UsageDelta, usage_apply
from tests.api.conftest import hour

pytestmark = pytest.mark.django_db


def _token(user) -> str:
    return token_create(
        scopes=("read", "write"), user=user, name="t", expires_at=timezone.now() + timedelta(days=1)
    ).secret


def test_me_before_and_after_start(owner, owner_token, api):
    me = api(owner_token).get("/api/v1/me/").json()
    assert me["email"] == owner.email and me["accelerator"] is None and me["is_staff"] is False
    tenant = tenant_start(user=owner)
    acc = api(owner_token).get("/api/v1/me/").json()["accelerator"]
    assert acc["label"] == tenant.label
    assert acc["mirror_url"].startswith(f"{settings.MIRROR_SCHEME}://{tenant.label}.")
    assert {s["key"] for s in acc["snippets"]} >= {"docker", "containerd", "podman"}


def test_accelerator_get_start_rotate(owner, owner_token, api):
    client = api(owner_token)
    missing = client.get("/api/v1/accelerator/")
    assert missing.status_code == 404 and "Start" in missing.json()["detail"]
    assert client.post("/api/v1/accelerator/rotate/").status_code == 404
    created = client.post("/api/v1/accelerator/")
    assert created.status_code == 201
    again = client.post("/api/v1/accelerator/")
    assert again.status_code == 200 and again.json()["label"] == created.json()["label"]
    assert Tenant.objects.filter(user=owner).count() == 1
    old = created.json()["label"]
    rotated = client.post("/api/v1/accelerator/rotate/")
    assert rotated.status_code == 200 and rotated.json()["label"] != old
    assert RetiredLabel.objects.filter(label=old).exists()
    assert client.get("/api/v1/accelerator/").json()["label"] == rotated.json()["label"]


def test_rotate_is_limited_per_day_and_says_how_long_the_old_address_answers(
    owner, owner_token, api, settings
):
    settings.EDGE_GATE_SYNC_SECONDS = 3
    client = api(owner_token)
    tenant = tenant_start(user=owner)
    for _ in range(5):
        rotated = client.post("/api/v1/accelerator/rotate/")
        assert rotated.status_code == 200
        assert rotated.json()["old_address_stops_within_seconds"] == 13
    label = rotated.json()["label"]
    refused = client.post("/api/v1/accelerator/rotate/")
    assert refused.status_code == 400
    assert refused.json() == {
        "non_field_errors": ["You can rotate your address 5 times in 24 hours. Try again later."]
    }
    assert Tenant.objects.get(pk=tenant.pk).label == label
    # A day later (rows moved back, never a wait) the oldest rotation no longer counts.
    oldest = RetiredLabel.objects.filter(tenant=tenant).order_by("retired_at").first()
    oldest.retired_at -= timedelta(days=1)
    oldest.save(update_fields=["retired_at"])
    again = client.post("/api/v1/accelerator/rotate/")
    assert again.status_code == 200 and again.json()["label"] != label
    assert client.post("/api/v1/accelerator/rotate/").status_code == 400


def test_quota_is_the_ledgers_month_summary(owner_tenant, owner_token, api):
    usage_apply(deltas=[UsageDelta(owner_tenant.pk, "e1", hour(0), 3 * 10**9, 10, 4)])
    grant_create(tenant=owner_tenant, kind=Grant.Kind.PROMO, bytes=2 * 10**9, source_key="promo:t1")
    body = api(owner_token).get("/api/v1/quota/").json()
    summary = month_summary(tenant=owner_tenant)
    assert body["used"] == summary.used == 3 * 10**9
    assert body["base"] == settings.QUOTA_MONTHLY_BYTES
    assert body["bonus_left"] == 2 * 10**9
    assert body["remaining"] == summary.remaining
    assert body["percent_used"] == summary.percent_used
    assert body["exhausted"] is False


def test_quota_carries_last_months_overspend(owner_tenant, owner_token, api):
    base = settings.QUOTA_MONTHLY_BYTES
    last_month = month_start(month_start(timezone.now()) - timedelta(hours=1))
    usage_apply(deltas=[UsageDelta(owner_tenant.pk, "e1", last_month, base + 7, 1, 0)])
    body = api(owner_token).get("/api/v1/quota/").json()
    assert body["carried_over"] == month_summary(tenant=owner_tenant).carried_in == 7
    assert (body["used"], body["overspent"], body["remaining"]) == (0, 0, base - 7)
    assert body["exhausted"] is False


def test_grants_are_scoped_to_the_callers_tenant(owner_tenant, owner_token, stranger, api):
    other = tenant_start(user=stranger)
    grant_create(tenant=owner_tenant, kind="promo", bytes=5, source_key="a")
    grant_create(tenant=other, kind="promo", bytes=7, source_key="b")
    mine = api(owner_token).get("/api/v1/quota/grants/").json()
    assert [g["bytes"] for g in mine["results"]] == [5]
    theirs = api(_token(stranger)).get("/api/v1/quota/grants/").json()
    assert [g["bytes"] for g in theirs["results"]] == [7]


def test_grants_listed_are_the_ones_made_by_now(owner_tenant, owner_token, api):
    grant_create(tenant=owner_tenant, kind="promo", bytes=5, source_key="now")
    later = timezone.now() + timedelta(hours=1)
    grant_create(tenant=owner_tenant, kind="promo", bytes=9, source_key="later", now=later)
    listed = api(owner_token).get("/api/v1/quota/grants/").json()
    assert [g["bytes"] for g in listed["results"]] == [5]  # as the month rule counts them


def test_usage_per_day_and_per_hour(owner_tenant, owner_token, stranger, api):
    other = tenant_start(user=stranger)
    usage_apply(
        deltas=[
            UsageDelta(owner_tenant.pk, "e1", hour(2, 5), 100, 2, 1),
            UsageDelta(owner_tenant.pk, "e2", hour(2, 5), 50, 1, 1),
            UsageDelta(owner_tenant.pk, "e1", hour(1, 23), 7, 1, 0),
            UsageDelta(owner_tenant.pk, "e1", hour(10), 1000, 1, 0),  # outside the range
            UsageDelta(other.pk, "e1", hour(2, 5), 999_999, 9, 9),  # another tenant
        ]
    )
    start, end = hour(2).date().isoformat(), hour(1).date().isoformat()
    daily = api(owner_token).get("/api/v1/usage/", {"start": start, "end": end}).json()
    assert daily["granularity"] == "day"
    assert [p["bytes"] for p in daily["points"]] == [150, 7]
    assert [p["requests"] for p in daily["points"]] == [3, 1]
    assert daily["total_bytes"] == 157
    hourly = (
        api(owner_token)
        .get("/api/v1/usage/", {"start": start, "end": end, "granularity": "hour"})
        .json()
    )
    assert len(hourly["points"]) == 48
    assert hourly["points"][5]["bytes"] == 150 and hourly["points"][5]["cache_hits"] == 2
    assert hourly["points"][47]["bytes"] == 7
    assert sum(p["bytes"] for p in hourly["points"]) == 157


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({"start": "2026-03-10", "end": "2026-03-01"}, {"end"}),
        ({"start": "2025-01-01", "end": "2026-03-01"}, {"end"}),
        ({"start": "2026-01-01", "end": "2026-03-01", "granularity": "hour"}, {"end"}),
        ({"start": "yesterday", "end": "2026-03-01"}, {"start"}),
        ({"start": "2026/03/01", "end": "12"}, {"start", "end"}),
        ({"start": "2026-02-30", "end": "2026-03-01"}, {"start"}),
        ({"start": "2026-03-01", "end": "2026-03-02", "granularity": "minute"}, {"granularity"}),
        ({"start": "2026-03-01", "end": "2026-03-02", "tenant": "5"}, {"tenant"}),
        (
            {"start": "2026-03-01", "end": "2026-03-02", "limit": "x", "page": "1"},
            {"limit", "page"},
        ),
        ({}, {"start", "end"}),
    ],
)
def test_usage_bad_parameters_get_400_per_field(owner_tenant, owner_token, api, params, fields):
    resp = api(owner_token).get("/api/v1/usage/", params)
    assert resp.status_code == 400
    body = resp.json()
    assert set(body) == fields, body
    assert all(isinstance(body[f], list) and body[f][0] for f in fields)


def test_usage_maximum_range_is_allowed(owner_tenant, owner_token, api):
    start = hour(400).date()
    day = api(owner_token).get(
        "/api/v1/usage/",
        {"start": start, "end": start + timedelta(days=settings.API_USAGE_MAX_DAILY_DAYS - 1)},
    )
    assert day.status_code == 200 and len(day.json()["points"]) == settings.API_USAGE_MAX_DAILY_DAYS
    hr = api(owner_token).get(
        "/api/v1/usage/",
        {
            "start": start,
            "end": start + timedelta(days=settings.API_USAGE_MAX_HOURLY_DAYS - 1),
            "granularity": "hour",
        },
    )
    assert len(hr.json()["points"]) == settings.API_USAGE_MAX_HOURLY_DAYS * 24


@pytest.mark.parametrize(
    "url",
    ["/api/v1/accelerator/", "/api/v1/quota/", "/api/v1/usage/?start=2026-01-01&end=2026-01-02"],
)
def test_stranger_without_accelerator_gets_404_and_no_one_elses_data(
    owner_tenant, stranger, api, url
):
    usage_apply(deltas=[UsageDelta(owner_tenant.pk, "e1", hour(0), 123, 1, 0)])
    resp = api(_token(stranger)).get(url)
    assert resp.status_code == 404
    assert owner_tenant.label not in resp.content.decode()


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/me/",
        "/api/v1/accelerator/",
        "/api/v1/quota/",
        "/api/v1/quota/grants/",
        "/api/v1/usage/?start=2026-01-01&end=2026-01-02",
        "/api/v1/tokens/",
    ],
)
def test_anonymous_gets_401(client, url):
    assert client.get(url).status_code == 401


def test_unknown_query_parameters_on_lists_get_400(owner_tenant, owner_token, api):
    resp = api(owner_token).get("/api/v1/quota/grants/", {"tenant": "1", "limit": "0"})
    assert resp.status_code == 400 and set(resp.json()) == {"tenant", "limit"}


def test_throttle_is_per_user_fairness(settings, owner_tenant, owner_token, stranger, api):
    from rest_framework.throttling import UserRateThrottle

    old = UserRateThrottle.THROTTLE_RATES
    UserRateThrottle.THROTTLE_RATES = {**old, "user": "3/min"}
    try:
        codes = [api(owner_token).get("/api/v1/me/").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        # Another user is not slowed down by the first one.
        assert api(_token(stranger)).get("/api/v1/me/").status_code == 200
    finally:
        UserRateThrottle.THROTTLE_RATES = old
    assert UsageBucket.objects.count() == 0


def test_quota_when_exhausted(owner_tenant, owner_token, api):
    base = settings.QUOTA_MONTHLY_BYTES
    usage_apply(deltas=[UsageDelta(owner_tenant.pk, "e1", hour(0), base + 5, 1, 0)])
    body = api(owner_token).get("/api/v1/quota/").json()
    assert body["exhausted"] is True and body["remaining"] == 0
    assert body["percent_used"] == 100 and body["overspent"] == 5
    assert body["carried_over"] == 0
