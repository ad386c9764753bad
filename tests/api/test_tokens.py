"""Personal access tokens: issue once, store hashed, expire, revoke, refuse everything else."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from api.models import PersonalAccessToken
from api.services import token_create
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db
ME = "/api/v1/me/"


def test_console_issues_token_once_and_stores_only_its_hash(minting_client, owner, api):
    owner_client = minting_client
    resp = owner_client.post(
        "/console/tokens/", {"name": "laptop", "expires_in_days": "30", "scopes": ["read"]}
    )
    # The secret is in the answer to the POST itself, never in the session.
    assert resp.status_code == 200
    assert resp["Cache-Control"] == "no-store"
    token = PersonalAccessToken.objects.get(user=owner)
    secret = resp.context["issued"].secret
    assert secret not in str(dict(owner_client.session.items()))
    assert secret.startswith("mat_") and secret in resp.content.decode()
    assert token.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {token.digest, token.prefix, token.name}
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    # Shown once: the list page never shows it again.
    assert secret not in owner_client.get("/console/tokens/").content.decode()
    me = api(secret).get(ME)
    assert me.status_code == 200 and me.json()["email"] == owner.email
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_several_named_tokens_per_user(minting_client, owner):
    for name in ["ci", "laptop", "ci"]:
        minting_client.post(
            "/console/tokens/", {"name": name, "expires_in_days": "7", "scopes": ["read"]}
        )
    assert sorted(
        PersonalAccessToken.objects.filter(user=owner).values_list("name", flat=True)
    ) == [
        "ci",
        "ci",
        "laptop",
    ]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "", "expires_in_days": "30"}, "name"),
        ({"name": "   ", "expires_in_days": "30"}, "name"),
        ({"name": "x" * 101, "expires_in_days": "30"}, "name"),
        ({"name": "ok", "expires_in_days": "0"}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": "9999"}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": "ten"}, "expires_in_days"),
        ({"name": "ok"}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": "30"}, "scopes"),
        ({"name": "ok", "expires_in_days": "30", "scopes": ["admin"]}, "scopes"),
        ({"name": "ok", "expires_in_days": "30", "scopes": ["read", "staff"]}, "scopes"),
        ({"name": "ok", "expires_in_days": "30", "scopes": ["read write"]}, "scopes"),
    ],
)
def test_console_token_form_refuses_bad_values(minting_client, owner, data, field):
    data = {"scopes": ["read"], **data} if field != "scopes" else data
    resp = minting_client.post("/console/tokens/", data)
    assert resp.status_code == 400
    assert resp.context["form"].errors[field]
    assert not PersonalAccessToken.objects.filter(user=owner).exists()


def test_expired_token_is_refused(owner, api):
    issued = token_create(
        scopes=("read", "write"),
        user=owner,
        name="old",
        expires_at=timezone.now() + timedelta(days=1),
    )
    PersonalAccessToken.objects.filter(pk=issued.token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    resp = api(issued.secret).get(ME)
    assert resp.status_code == 401
    assert "expired" in resp.json()["detail"]
    assert resp["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_is_refused_and_revocation_is_idempotent(
    owner_client, owner, owner_token, api
):
    token = PersonalAccessToken.objects.get(user=owner)
    assert api(owner_token).get(ME).status_code == 200
    assert owner_client.post(f"/console/tokens/{token.pk}/revoke/").status_code == 302
    assert api(owner_token).get(ME).status_code == 401
    first = PersonalAccessToken.objects.get(pk=token.pk).revoked_at
    assert owner_client.post(f"/console/tokens/{token.pk}/revoke/").status_code == 302
    assert PersonalAccessToken.objects.get(pk=token.pk).revoked_at == first
    assert "revoked" in owner_client.get("/console/tokens/").content.decode()


def test_wrong_token_is_refused(owner_token, api):
    wrong = owner_token[:-4] + ("AAAA" if not owner_token.endswith("AAAA") else "BBBB")
    assert api(wrong).get(ME).status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer   ",
        "Bearer mat_short",
        "Bearer not-a-token-at-all",
        "Bearer mat_" + "A" * 42 + "!",
        "Bearer two parts",
        "Bearer mat_é" + "A" * 42,
        "Bearer " + "A" * 5000,
    ],
)
def test_malformed_token_is_refused_without_error(client, owner_token, header):
    resp = client.get(ME, headers={"Authorization": header})
    assert resp.status_code == 401
    assert resp.json()["detail"]


def test_no_credentials_or_other_schemes_get_401(client, owner_token):
    assert client.get(ME).status_code == 401
    assert client.get(ME, headers={"Authorization": f"Token {owner_token}"}).status_code == 401
    assert client.get(ME, headers={"Authorization": "Basic b3duZXI6cHc="}).status_code == 401


def test_token_of_deactivated_user_is_refused(owner, owner_token, api):
    owner.is_active = False
    owner.save(update_fields=["is_active"])
    assert api(owner_token).get(ME).status_code == 401


def test_stranger_cannot_revoke_someone_elses_token(client, owner, owner_token, stranger, api):
    token = PersonalAccessToken.objects.get(user=owner)
    client.force_login(stranger)
    assert client.post(f"/console/tokens/{token.pk}/revoke/").status_code == 404
    assert client.delete(f"/api/v1/tokens/{token.pk}/").status_code == 404
    assert client.get("/api/v1/tokens/").json()["results"] == []
    assert "ci" not in client.get("/console/tokens/").content.decode()
    client.logout()
    assert api(owner_token).get(ME).status_code == 200


def test_a_token_cannot_manage_tokens(owner_token, api):
    """A leaked token must not be able to mint or list tokens: session only."""
    assert api(owner_token).get("/api/v1/tokens/").status_code == 403
    assert api(owner_token).post("/api/v1/tokens/", {"name": "x"}).status_code == 403
    assert PersonalAccessToken.objects.count() == 1


def test_session_manages_tokens_through_the_api(minting_client, owner, api):
    owner_client = minting_client
    resp = owner_client.post(
        "/api/v1/tokens/", {"name": "script", "expires_in_days": 5}, content_type="application/json"
    )
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["secret"].startswith("mat_") and body["name"] == "script"
    listed = owner_client.get("/api/v1/tokens/").json()["results"]
    assert [t["id"] for t in listed] == [body["id"]] and "secret" not in listed[0]
    assert api(body["secret"]).get(ME).status_code == 200
    assert owner_client.delete(f"/api/v1/tokens/{body['id']}/").status_code == 204
    assert api(body["secret"]).get(ME).status_code == 401


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        ({"name": "x", "colour": "red"}, {"colour"}),
        ({"name": "", "expires_in_days": 0}, {"name", "expires_in_days"}),
        ({"name": "x", "expires_in_days": "soon"}, {"expires_in_days"}),
        ({"expires_in_days": 10**6}, {"name", "expires_in_days"}),
        ({"name": "x", "scopes": []}, {"scopes"}),
        ({"name": "x", "scopes": "read"}, {"scopes"}),
        ({"name": "x", "scopes": ["root"]}, {"scopes"}),
        ({"name": "x", "scopes": ["staff"]}, {"scopes"}),
        ({"name": "x", "scopes": ["read"] * 4}, {"scopes"}),
        ({"name": "x", "scopes": [None]}, {"scopes"}),
    ],
)
def test_api_token_create_refuses_bad_fields(minting_client, data, fields):
    resp = minting_client.post("/api/v1/tokens/", data, content_type="application/json")
    assert resp.status_code == 400
    assert set(resp.json()) == fields
    assert all(resp.json()[f] for f in fields)
    assert PersonalAccessToken.objects.count() == 0


def test_login_with_password_then_session_auth_works(client, owner):
    assert client.login(email=owner.email, password=PASSWORD)
    assert client.get(ME).json()["email"] == owner.email


def test_live_token_limit(minting_client, owner, settings):
    owner_client = minting_client
    settings.API_TOKEN_MAX_LIVE = 2
    expired = token_create(
        scopes=("read", "write"),
        user=owner,
        name="old",
        expires_at=timezone.now() + timedelta(days=1),
    )
    PersonalAccessToken.objects.filter(pk=expired.token.pk).update(
        expires_at=timezone.now() - timedelta(days=1)
    )
    for name in ["a", "b"]:
        resp = owner_client.post(
            "/console/tokens/", {"name": name, "expires_in_days": "5", "scopes": ["read"]}
        )
        assert resp.status_code == 200
    refused = owner_client.post(
        "/console/tokens/", {"name": "c", "expires_in_days": "5", "scopes": ["read"]}
    )
    assert refused.status_code == 400 and "most allowed" in refused.content.decode()
    api_refused = owner_client.post(
        "/api/v1/tokens/", {"name": "c"}, content_type="application/json"
    )
    assert api_refused.status_code == 400 and api_refused.json()["non_field_errors"]
    assert PersonalAccessToken.objects.filter(user=owner).count() == 3
    # Revoking one makes room again.
    token = PersonalAccessToken.objects.get(name="a")
    owner_client.post(f"/console/tokens/{token.pk}/revoke/")
    resp = owner_client.post(
        "/console/tokens/", {"name": "c", "expires_in_days": "5", "scopes": ["read"]}
    )
    assert resp.status_code == 200 and resp.context["issued"]


def test_session_writes_need_the_csrf_token_but_bearer_writes_do_not(owner, owner_token, api):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    resp = browser.post("/api/v1/accelerator/", content_type="application/json")
    assert resp.status_code == 403 and "CSRF" in resp.json()["detail"]
    from accelerator.models import Tenant

    assert not Tenant.objects.filter(user=owner).exists()
    script = Client(enforce_csrf_checks=True)
    resp = script.post(
        "/api/v1/accelerator/",
        content_type="application/json",
        headers={"Authorization": f"Bearer {owner_token}"},
    )
    assert resp.status_code == 201
