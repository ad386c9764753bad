"""Token scopes (read, write, staff), re-authentication to mint, revocation on a new password,
and the scopes existing tokens were given."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import timezone

from accelerator.models import Tenant
from accelerator.services import tenant_start
from api.models import PersonalAccessToken
from api.services import TokenScopeRefused, token_create
from quota.models import Grant
from tests.api.conftest import reauthenticate
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db
ME = "/api/v1/me/"
OVERVIEW = "/api/v1/staff/overview/"


def _token(user, *scopes: str) -> str:
    return token_create(
        user=user, name="t", expires_at=timezone.now() + timedelta(days=1), scopes=scopes
    ).secret


def test_a_read_token_reads_but_cannot_post_put_or_delete(owner, api, client):
    tenant = tenant_start(user=owner)
    read = api(_token(owner, "read"))
    assert read.get(ME).status_code == 200
    assert read.get("/api/v1/accelerator/").status_code == 200
    for method, url in [
        ("post", "/api/v1/accelerator/rotate/"),
        ("post", "/api/v1/invites/"),
        ("put", "/api/v1/accelerator/"),
        ("delete", "/api/v1/accelerator/"),
    ]:
        resp = getattr(client, method)(
            url, {}, content_type="application/json", headers=read.headers
        )
        assert resp.status_code == 403, (method, url, resp.content)
        assert "write" in resp.json()["detail"]
    assert Tenant.objects.get(pk=tenant.pk).label == tenant.label  # not rotated


def test_a_write_only_token_cannot_read(owner, api):
    write = api(_token(owner, "write"))
    assert write.get(ME).status_code == 403
    assert write.post("/api/v1/accelerator/").status_code == 201
    assert Tenant.objects.filter(user=owner).exists()


def test_the_staff_api_needs_the_staff_scope_and_a_staff_user(staff, owner, api):
    tenant = tenant_start(user=owner)
    grant = f"/api/v1/staff/tenants/{tenant.pk}/grant/"
    body = {"gigabytes": 1, "reason": "test"}
    plain = api(_token(staff, "read", "write"))
    resp = plain.get(OVERVIEW)
    assert resp.status_code == 403 and "staff" in resp.json()["detail"]
    assert plain.post(grant, body).status_code == 403
    # The staff scope reads; writing needs write as well.
    read_staff = api(_token(staff, "read", "staff"))
    assert read_staff.get(OVERVIEW).status_code == 200
    assert read_staff.post(grant, body).status_code == 403
    assert not Grant.objects.filter(tenant=tenant).exists()
    full = api(_token(staff, "read", "write", "staff"))
    assert full.post(grant, body).status_code in {200, 201}
    assert Grant.objects.filter(tenant=tenant).count() == 1
    # A non-staff user's token: the staff API does not exist (404), and no staff scope.
    assert api(_token(owner, "read", "write")).get(OVERVIEW).status_code == 404
    with pytest.raises(TokenScopeRefused):
        _token(owner, "read", "staff")
    # A user who lost staff keeps a staff-scoped token that reaches nothing of the staff API.
    staff.is_staff = False
    staff.save(update_fields=["is_staff"])
    assert read_staff.get(OVERVIEW).status_code == 404


@pytest.mark.parametrize("scopes", [(), ("root",), ("read", "READ"), ("read write",)])
def test_the_service_refuses_bad_scopes(owner, scopes):
    with pytest.raises(TokenScopeRefused):
        _token(owner, *scopes)
    assert not PersonalAccessToken.objects.exists()


def test_a_session_is_not_scoped(owner_client, staff, client):
    client.force_login(staff)
    assert client.get(OVERVIEW).status_code == 200
    assert owner_client.post("/api/v1/accelerator/").status_code == 201


def test_minting_needs_a_recent_password_check_then_replays_the_form(owner_client, owner):
    form = {"name": "ci", "expires_in_days": "30", "scopes": ["read", "write"]}
    resp = owner_client.post("/console/tokens/", form)
    assert resp.status_code == 302
    assert resp["Location"].startswith(reverse("account_reauthenticate"))
    assert not PersonalAccessToken.objects.exists()
    # The API says so too, and mints nothing.
    api_resp = owner_client.post("/api/v1/tokens/", {"name": "x"}, content_type="application/json")
    assert api_resp.status_code == 403 and "recent login" in api_resp.json()["detail"]
    assert not PersonalAccessToken.objects.exists()
    # A wrong password does not count.
    wrong = owner_client.post(resp["Location"], {"password": "wrong-password"})
    assert wrong.status_code == 200 and not PersonalAccessToken.objects.exists()
    # The right one: allauth replays the suspended POST, whose answer shows the secret once.
    done = owner_client.post(resp["Location"], {"password": PASSWORD})
    token = PersonalAccessToken.objects.get(user=owner)
    assert token.scopes == "read write"
    assert done.status_code == 200 and done["Cache-Control"] == "no-store"
    secret = done.context["issued"].secret
    assert secret in done.content.decode()
    assert secret not in str(dict(owner_client.session.items()))
    # The listing page never shows it again.
    assert secret not in owner_client.get("/console/tokens/").content.decode()


def test_the_listing_needs_no_password_check(owner_client):
    assert owner_client.get("/console/tokens/").status_code == 200


def test_a_password_change_revokes_every_token(owner_client, owner, api):
    secrets = [_token(owner, "read"), _token(owner, "read", "write")]
    other = _token(
        type(owner).objects.create_user(email="other@example.com", password=PASSWORD), "read"
    )
    resp = owner_client.post(
        reverse("account_change_password"),
        {
            "oldpassword": PASSWORD,
            "password1": "a-new-long-pass-42",
            "password2": "a-new-long-pass-42",
        },
    )
    assert resp.status_code == 302
    for secret in secrets:
        assert api(secret).get(ME).status_code == 401
    assert not PersonalAccessToken.objects.filter(user=owner, revoked_at__isnull=True).exists()
    assert api(other).get(ME).status_code == 200  # another user's tokens are untouched


def test_a_wrong_old_password_revokes_nothing(owner_client, owner, api):
    secret = _token(owner, "read")
    resp = owner_client.post(
        reverse("account_change_password"),
        {
            "oldpassword": "not-it",
            "password1": "a-new-long-pass-42",
            "password2": "a-new-long-pass-42",
        },
    )
    assert resp.status_code == 200
    assert api(secret).get(ME).status_code == 200


def test_a_password_reset_revokes_every_token(client, owner, api):
    secret = _token(owner, "read", "write")
    client.post(reverse("account_reset_password"), {"email": owner.email})
    link = re.search(r"https?://\S+(/accounts/password/reset/key/\S+/)", mail.outbox[-1].body)
    form_page = client.get(link.group(1), follow=True)
    resp = client.post(
        form_page.redirect_chain[-1][0] if form_page.redirect_chain else link.group(1),
        {"password1": "a-new-long-pass-42", "password2": "a-new-long-pass-42"},
    )
    assert resp.status_code == 302, resp.content[:500]
    assert api(secret).get(ME).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_existing_tokens_keep_what_they_could_do(django_user_model):
    """Before scopes a token was its owner's whole API: read and write, and staff's the staff
    API. The migration gives them exactly that."""
    executor = MigrationExecutor(connection)
    before = [("api", "0001_initial")]
    after = executor.loader.graph.leaf_nodes("api")
    executor.migrate(before)
    try:
        apps = executor.loader.project_state(before).apps
        Token = apps.get_model("api", "PersonalAccessToken")
        # Users as they are now (only the api app went back); the old tokens by their ids.
        member = django_user_model.objects.create_user(email="m@example.com", password="x")
        boss = django_user_model.objects.create_user(
            email="b@example.com", password="x", is_staff=True
        )
        expires = timezone.now() + timedelta(days=1)
        for n, user in enumerate([member, boss]):
            Token.objects.create(
                user_id=user.pk, name="old", prefix="mat_x", digest=f"{n:064d}", expires_at=expires
            )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(after)
    scopes = dict(PersonalAccessToken.objects.values_list("user__email", "scopes"))
    assert scopes == {"m@example.com": "read write", "b@example.com": "read write staff"}


def test_reauthenticate_helper_really_checks_the_password(owner_client):
    resp = owner_client.post(reverse("account_reauthenticate"), {"password": "nope"})
    assert resp.status_code == 200
    reauthenticate(owner_client)


def test_a_password_set_by_staff_in_the_admin_revokes_the_tokens(client, staff, owner, api):
    secret = _token(owner, "read")
    staff.is_superuser = True
    staff.save(update_fields=["is_superuser"])
    client.force_login(staff)
    resp = client.post(
        f"/admin/accounts/user/{owner.pk}/password/",
        {"password1": "a-new-long-pass-42", "password2": "a-new-long-pass-42"},
    )
    assert resp.status_code == 302, resp.content[:500]
    assert api(secret).get(ME).status_code == 401


def test_set_password_anywhere_revokes_the_tokens(owner, api):
    # What `manage.py changepassword` and any other code path do.
    secret = _token(owner, "read")
    owner.set_password("a-new-long-pass-42")
    owner.save()
    assert api(secret).get(ME).status_code == 401


def test_the_hash_upgrade_at_login_is_not_a_new_password(client, owner, api):
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    # A hash with fewer iterations than today's: Django re-hashes it at the next login.
    old_hash = PBKDF2PasswordHasher().encode(PASSWORD, "somesalt1234", iterations=1000)
    type(owner).objects.filter(pk=owner.pk).update(password=old_hash)
    secret = _token(owner, "read")
    assert client.login(email=owner.email, password=PASSWORD)
    owner.refresh_from_db()
    assert owner.password != old_hash  # upgraded...
    assert api(secret).get(ME).status_code == 200  # ...and the token still works
