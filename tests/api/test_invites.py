"""Invites through the API: the accounts app's rules and messages, as JSON."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from accounts.models import Invite, InviteEmail
from api.services import token_create

pytestmark = pytest.mark.django_db(transaction=False)


def test_invites_get_shows_link_and_stats(owner, owner_token, stranger, api):
    Invite.objects.create(inviter=owner, invitee=stranger, code="x" * 12)
    body = api(owner_token).get("/api/v1/invites/").json()
    owner.refresh_from_db()
    assert body["code"] == owner.invite_code
    assert (
        body["link"].endswith(f"/invite/{owner.invite_code}/") or owner.invite_code in body["link"]
    )
    assert body["stats"]["signed_up"] == 1 and body["stats"]["cap"] == settings.INVITE_CAP
    assert len(body["invitees"]) == 1 and body["invitees"][0]["email"] != stranger.email
    # The stranger sees their own, empty, invites.
    other = token_create(
        scopes=("read", "write"),
        user=stranger,
        name="t",
        expires_at=timezone.now() + timedelta(days=1),
    )
    assert api(other.secret).get("/api/v1/invites/").json()["invitees"] == []


def test_invite_send(owner, owner_token, api, django_capture_on_commit_callbacks):
    # Delivery is queued after commit (the accounts app's task); the record is what we check.
    with django_capture_on_commit_callbacks(execute=False) as queued:
        resp = api(owner_token).post("/api/v1/invites/", {"email": "Friend@Example.org"})
    assert len(queued) == 1
    assert resp.status_code == 201, resp.content
    assert resp.json()["email"] == "friend@example.org"
    assert InviteEmail.objects.filter(inviter=owner, email="friend@example.org").count() == 1


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"email": "not-an-address"}, {"email"}),
        ({"email": "a@example.org", "bcc": "b@example.org"}, {"bcc"}),
        ({}, {"email"}),
        ({"email": ["a@example.org"]}, {"email"}),
    ],
)
def test_invite_send_refusals(owner, owner_token, stranger, api, body, fields):
    resp = api(owner_token).post("/api/v1/invites/", body)
    assert resp.status_code == 400
    assert set(resp.json()) == fields and all(resp.json()[f] for f in fields)
    assert not InviteEmail.objects.exists()


def test_invites_anonymous_401(client):
    assert client.get("/api/v1/invites/").status_code == 401
    assert client.post("/api/v1/invites/", {}).status_code == 401
