"""The export: every section, the reader's data only, no secrets; the same from the API."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from accelerator.services import tenant_rotate, tenant_start
from accounts.models import Invite, InviteEmail
from api.services import token_create
from dashboard.services import staff_suspend
from quota.grants import grant_create
from quota.models import Grant
from quota.usage import UsageDelta, usage_apply
from selfservice.export import SECTIONS

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(owner, stranger, staff):
    """The owner with something in every section, and a stranger with their own."""
    tenant = tenant_start(user=owner)
    old_label = tenant.label
    tenant = tenant_rotate(tenant=tenant)
    other = tenant_start(user=stranger)
    now = timezone.now()
    hour = now.replace(minute=0, second=0, microsecond=0)
    usage_apply(
        deltas=[
            UsageDelta(tenant_id=tenant.pk, edge="local", hour=hour, bytes=1234, requests=3),
            UsageDelta(tenant_id=other.pk, edge="local", hour=hour, bytes=999, requests=1),
        ]
    )
    grant_create(tenant=tenant, kind=Grant.Kind.STAFF, bytes=5, source_key="t:1", note="thanks")
    grant_create(tenant=other, kind=Grant.Kind.STAFF, bytes=7, source_key="t:2", note="secret")
    Invite.objects.create(inviter=owner, invitee=stranger, code="abcdefgh")
    InviteEmail.objects.create(inviter=owner, email="friend@example.net")
    InviteEmail.objects.create(inviter=stranger, email="stranger-friend@example.net")
    token_create(user=owner, name="laptop", expires_at=now + timedelta(days=9), scopes=["read"])
    issued = token_create(
        user=stranger, name="their-ci", expires_at=now + timedelta(days=9), scopes=["read"]
    )
    staff_suspend(actor=staff, tenant=tenant, reason="abuse check")
    staff_suspend(actor=staff, tenant=other, reason="their own case")
    return {"old_label": old_label, "tenant": tenant, "stranger_secret": issued.secret}


def _check(data, owner, history):
    assert set(SECTIONS) <= set(data)
    assert data["account"]["email"] == owner.email
    assert data["accelerator"]["label"] == history["tenant"].label
    assert [r["label"] for r in data["accelerator"]["retired_labels"]] == [history["old_label"]]
    assert sum(day["bytes"] for day in data["usage_daily"]) == 1234
    assert [g["note"] for g in data["grants"]] == ["thanks"]
    assert data["invites_sent"][0]["other"] == "st******@example.com"
    assert [e["email"] for e in data["invite_emails"]] == ["friend@example.net"]
    assert data["invite_received"] is None
    assert [t["name"] for t in data["api_tokens"]] == ["laptop"]
    assert [a["reason"] for a in data["staff_actions"]] == ["abuse check"]
    text = json.dumps(data)
    for theirs in ("secret", "stranger-friend", "their-ci", "their own case", "stranger@"):
        assert theirs not in text
    for secret_field in ("password", "digest", "undo_nonce"):
        assert secret_field not in text


def test_download_has_every_section_and_nothing_of_another_user(owner_client, owner, history):
    resp = owner_client.get("/account/export/")
    assert resp.status_code == 200
    assert resp["Content-Disposition"].startswith('attachment; filename="mirror-accelerator-')
    assert resp["Cache-Control"] == "no-store"
    _check(json.loads(resp.content), owner, history)


def test_the_api_gives_the_same(api, owner, history):
    token = token_create(
        user=owner, name="export", expires_at=timezone.now() + timedelta(days=1), scopes=["read"]
    )
    resp = api(token.secret).get("/api/v1/me/export/")
    assert resp.status_code == 200
    data = resp.json()
    _check({**data, "api_tokens": data["api_tokens"][:1]}, owner, history)


def test_the_stranger_gets_their_own(api, history):
    data = api(history["stranger_secret"]).get("/api/v1/me/export/").json()
    assert data["account"]["email"] == "stranger@example.com"
    assert "thanks" not in json.dumps(data) and "laptop" not in json.dumps(data)
    assert data["invite_received"]["other"] == "ow***@example.com"


@pytest.mark.parametrize(
    "header", [None, "Bearer nope", "Bearer " + "x" * 5000, "Basic Zm9vOmJhcg=="]
)
def test_without_a_valid_token_nothing(api, client, header):
    headers = {"Authorization": header} if header else {}
    resp = client.get("/api/v1/me/export/", headers=headers)
    assert resp.status_code in (401, 403)
    assert "email" not in resp.content.decode()


def test_a_visitor_gets_no_download(client):
    resp = client.get("/account/export/")
    assert resp.status_code == 302 and "/accounts/login/" in resp["Location"]


def test_export_is_read_only(owner_client):
    assert owner_client.post("/account/export/").status_code == 405
