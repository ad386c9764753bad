"""Deleting an account: re-authentication and the typed address; deactivated at once (no
login, no API token, the label out of the gate map); undo within the grace period; erasure
after it, with the ledger's totals unchanged; no second welcome bonus for the same mailbox."""

from __future__ import annotations

from datetime import timedelta

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.db.models import Sum
from django.test import override_settings
from django.utils import timezone

from accelerator.gate import gate_table
from accelerator.models import RetiredLabel, Tenant
from accelerator.services import tenant_start
from accounts.models import AccountDeletion, Invite, InviteEmail, User
from api.models import PersonalAccessToken
from api.services import token_create
from dashboard.models import StaffAction
from quota.grants import grant_create
from quota.invites import invite_credit
from quota.models import Grant, UsageBucket
from quota.usage import UsageDelta, usage_apply
from selfservice.deletion import account_delete
from selfservice.erasure import accounts_purge_due, erased_email
from tests.conftest import PASSWORD
from tests.selfservice.conftest import password_login, undo_link

# The deletion email is queued after commit: these tests commit.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def owned(owner):
    tenant = tenant_start(user=owner)
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    usage_apply(
        deltas=[UsageDelta(tenant_id=tenant.pk, edge="local", hour=hour, bytes=5000, requests=2)]
    )
    grant_create(tenant=tenant, kind=Grant.Kind.STAFF, bytes=77, source_key="s:1")
    token = token_create(
        user=owner, name="ci", expires_at=timezone.now() + timedelta(days=5), scopes=["read"]
    )
    return {"tenant": tenant, "label": tenant.label, "token": token.secret}


def _delete(client, owner):
    return client.post("/account/delete/", {"email": owner.email})


def test_delete_needs_a_recent_login(client, owner, owned):
    client.force_login(owner)  # a session without a recorded login
    resp = _delete(client, owner)
    assert resp.status_code == 302 and "/accounts/reauthenticate/" in resp["Location"]
    owner.refresh_from_db()
    assert owner.is_active and not AccountDeletion.objects.exists()


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "stranger@example.com",
        "owner@example.co",
        "owner@example.com\x00",
        "o" * 300,
        "owner+x@example.com",
        "<script>@x",
    ],
)
def test_delete_refuses_anything_but_the_address(logged_in, owner, owned, typed):
    resp = logged_in.post("/account/delete/", {"email": typed})
    assert resp.status_code == 400
    assert b"errorlist" in resp.content
    owner.refresh_from_db()
    assert owner.is_active and not AccountDeletion.objects.exists()
    assert gate_table().get(owned["label"]) is not None


def test_delete_deactivates_at_once_and_undo_restores(logged_in, client, owner, owned, api):
    page = logged_in.get("/account/delete/")
    assert page.status_code == 200 and owner.email in page.content.decode()
    resp = _delete(logged_in, owner)
    assert resp.status_code == 302 and resp["Location"] == "/account/deleted/"
    owner.refresh_from_db()
    assert not owner.is_active
    deletion = AccountDeletion.objects.get(user=owner)
    assert deletion.status == "pending" and deletion.requested_by is None
    assert deletion.purge_after - deletion.requested_at == timedelta(days=7)
    # Logged out, and no login, no token, no label at the edge.
    assert client.get("/console/").status_code == 302
    password_login(client, owner.email)
    assert "_auth_user_id" not in client.session
    assert client.get("/console/").status_code == 302
    assert api(owned["token"]).get("/api/v1/me/").status_code == 401
    assert PersonalAccessToken.objects.get(user=owner).revoked_at is not None
    assert owned["label"] not in gate_table()
    # The email, with the undo link.
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [owner.email]
    link = undo_link(mail.outbox[0].body)
    confirm = client.get(link)
    assert confirm.status_code == 200 and owner.email in confirm.content.decode()
    owner.refresh_from_db()
    assert not owner.is_active  # a GET (a mail scanner) changes nothing
    assert client.post(link).status_code == 302
    owner.refresh_from_db()
    assert owner.is_active
    assert Tenant.objects.get(user=owner).label == owned["label"]
    assert owned["label"] in gate_table()
    assert api(owned["token"]).get("/api/v1/me/").status_code == 200
    assert password_login(client, owner.email).status_code == 302
    assert client.get("/console/").status_code == 200
    # The link works once.
    assert client.post(link).status_code == 410


@pytest.mark.parametrize(
    "token",
    ["x", "a" * 2000, "1:abc:def", "WzEsIm5vbmNlIl0:1tG:forged", "%00", "..%2f"],
)
def test_forged_undo_links_are_refused(client, owner, owned, token):
    account_delete(user=owner)
    assert client.get(f"/account/undo/{token}/").status_code in (404, 410)
    assert client.post(f"/account/undo/{token}/").status_code in (404, 410)
    owner.refresh_from_db()
    assert not owner.is_active


def test_an_old_undo_link_dies_with_its_deletion(client, owner, owned):
    account_delete(user=owner)
    first = undo_link(mail.outbox[-1].body)
    assert client.post(first).status_code == 302
    account_delete(user=owner)
    assert client.post(first).status_code == 410
    owner.refresh_from_db()
    assert not owner.is_active
    assert client.post(undo_link(mail.outbox[-1].body)).status_code == 302


def test_after_the_grace_period_the_data_is_erased_and_the_ledger_kept(
    client, owner, stranger, owned
):
    InviteEmail.objects.create(inviter=owner, email="friend@example.net")
    Invite.objects.create(inviter=owner, invitee=stranger, code="abcdefgh")
    totals = (
        UsageBucket.objects.aggregate(b=Sum("bytes"))["b"],
        Grant.objects.aggregate(b=Sum("bytes"))["b"],
    )
    deletion = account_delete(user=owner)
    link = undo_link(mail.outbox[-1].body)
    assert accounts_purge_due() == 0  # not yet
    later = deletion.purge_after + timedelta(seconds=1)
    assert accounts_purge_due(now=later) == 1
    assert accounts_purge_due(now=later) == 0  # idempotent
    owner.refresh_from_db()
    assert owner.email == erased_email(owner.pk)
    assert not owner.has_usable_password() and owner.signup_ip is None and owner.invite_code is None
    assert not EmailAddress.objects.filter(user=owner).exists()
    assert not InviteEmail.objects.filter(inviter=owner).exists()
    assert not PersonalAccessToken.objects.filter(user=owner).exists()
    assert not User.objects.filter(email__iexact="owner@example.com").exists()
    assert RetiredLabel.objects.filter(label=owned["label"]).exists()
    assert (
        UsageBucket.objects.aggregate(b=Sum("bytes"))["b"],
        Grant.objects.aggregate(b=Sum("bytes"))["b"],
    ) == totals
    assert Invite.objects.filter(inviter=owner, invitee=stranger).exists()
    assert client.post(link).status_code == 410
    assert AccountDeletion.objects.get(user=owner).status == "erased"


def test_an_undo_after_the_grace_period_is_refused(client, owner, owned):
    deletion = account_delete(user=owner)
    AccountDeletion.objects.filter(pk=deletion.pk).update(
        purge_after=timezone.now() - timedelta(seconds=1)
    )
    assert client.post(undo_link(mail.outbox[-1].body)).status_code == 410
    owner.refresh_from_db()
    assert not owner.is_active


def _invited_again_after_erasure(owner, stranger, email: str):
    """owner joined through stranger's invite (and got the welcome bonus), deleted the account
    and was erased; then ``email`` signs up, invited by stranger: (that user, the invite)."""
    Invite.objects.create(inviter=stranger, invitee=owner, code="abcdefgh")
    tenant_start(user=owner)
    invite_credit(invitee_id=owner.pk)
    assert Grant.objects.filter(kind=Grant.Kind.WELCOME, tenant__user=owner).exists()
    deletion = account_delete(user=owner)
    accounts_purge_due(now=deletion.purge_after + timedelta(seconds=1))
    user = User.objects.create_user(email=email, password=PASSWORD)
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    tenant_start(user=user)
    invite = Invite.objects.create(inviter=stranger, invitee=user, code="abcdefgh")
    invite_credit(invitee_id=user.pk)
    invite.refresh_from_db()
    return user, invite


def test_the_same_address_can_sign_up_again_without_a_second_welcome_bonus(
    client, owner, stranger, settings
):
    settings.INVITE_MIN_AGE_SECONDS = 0
    settings.INVITE_MIN_USAGE_BYTES = 0
    # The same mailbox (an alias of it) signs up again, invited again.
    again, second = _invited_again_after_erasure(owner, stranger, "Owner+again@example.com")
    assert second.status == "credited" and second.invitee_bytes == 0
    assert not Grant.objects.filter(kind=Grant.Kind.WELCOME, tenant__user=again).exists()


def test_another_mailbox_still_gets_its_welcome_bonus(owner, stranger, settings):
    settings.INVITE_MIN_AGE_SECONDS = 0
    settings.INVITE_MIN_USAGE_BYTES = 0
    _other, invite = _invited_again_after_erasure(owner, stranger, "someone@example.com")
    assert invite.invitee_bytes > 0


def test_staff_delete_is_audited_and_listed(client, staff, owner, owned):
    client.force_login(staff)
    resp = client.post(f"/staff/accounts/{owner.pk}/delete/", {"reason": "owner asked by mail"})
    assert resp.status_code == 302
    owner.refresh_from_db()
    assert not owner.is_active
    action = StaffAction.objects.get(kind="delete_account")
    assert action.actor == staff and action.reason == "owner asked by mail"
    assert AccountDeletion.objects.get(user=owner).requested_by == staff
    assert "Staff deleted" in mail.outbox[-1].body
    overview = client.get("/staff/").content.decode()
    assert 'data-testid="deletion-row"' in overview and owner.email in overview
    # A repeat changes nothing and records nothing more.
    client.post(f"/staff/accounts/{owner.pk}/delete/", {"reason": "again"})
    assert StaffAction.objects.filter(kind="delete_account").count() == 1


@pytest.mark.parametrize("reason", ["", "   ", "x" * 5000])
def test_staff_delete_needs_a_reason(client, staff, owner, owned, reason):
    client.force_login(staff)
    client.post(f"/staff/accounts/{owner.pk}/delete/", {"reason": reason})
    owner.refresh_from_db()
    assert owner.is_active and not StaffAction.objects.exists()


def test_staff_delete_is_not_there_for_others(client, owner, stranger):
    client.force_login(stranger)
    assert client.post(f"/staff/accounts/{owner.pk}/delete/", {"reason": "x"}).status_code == 404
    owner.refresh_from_db()
    assert owner.is_active


def test_staff_delete_of_an_unknown_user_is_404(client, staff):
    client.force_login(staff)
    assert client.post("/staff/accounts/999999/delete/", {"reason": "x"}).status_code == 404


def test_the_purge_command_and_task_erase_due_accounts(owner, owned):
    from django.core.management import call_command

    deletion = account_delete(user=owner)
    AccountDeletion.objects.filter(pk=deletion.pk).update(
        purge_after=timezone.now() - timedelta(seconds=1)
    )
    call_command("account_purge")
    owner.refresh_from_db()
    assert owner.email == erased_email(owner.pk)


@override_settings(ACCOUNT_DELETE_GRACE_DAYS=2)
def test_the_grace_period_is_a_setting(owner, owned):
    deletion = account_delete(user=owner)
    assert deletion.purge_after - deletion.requested_at == timedelta(days=2)


def test_staff_api_deletes_by_tenant_and_audits(staff, owner, owned, api):
    token = token_create(
        user=staff,
        name="ops",
        expires_at=timezone.now() + timedelta(days=1),
        scopes=["read", "write", "staff"],
    )
    url = f"/api/v1/staff/tenants/{owned['tenant'].pk}/delete-account/"
    resp = api(token.secret).post(url, {"reason": "court order"})
    assert resp.status_code == 201 and resp.json()["kind"] == "delete_account"
    owner.refresh_from_db()
    assert not owner.is_active
    assert StaffAction.objects.filter(kind="delete_account", reason="court order").count() == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"reason": ""},
        {"reason": "  "},
        {"reason": "x" * 2001},
        {"reason": ["a"]},
        {"reason": "ok", "extra": 1},
    ],
)
def test_staff_api_refuses_bad_bodies(staff, owner, owned, api, body):
    token = token_create(
        user=staff,
        name="ops",
        expires_at=timezone.now() + timedelta(days=1),
        scopes=["read", "write", "staff"],
    )
    url = f"/api/v1/staff/tenants/{owned['tenant'].pk}/delete-account/"
    assert api(token.secret).post(url, body).status_code == 400
    owner.refresh_from_db()
    assert owner.is_active and not StaffAction.objects.exists()


def test_staff_api_is_not_there_for_users(owner, stranger, owned, api):
    token = token_create(
        user=stranger,
        name="x",
        expires_at=timezone.now() + timedelta(days=1),
        scopes=["read", "write"],
    )
    url = f"/api/v1/staff/tenants/{owned['tenant'].pk}/delete-account/"
    assert api(token.secret).post(url, {"reason": "x"}).status_code == 404
    owner.refresh_from_db()
    assert owner.is_active


def test_an_account_without_an_accelerator_is_deleted_and_erased(logged_in, owner):
    assert _delete(logged_in, owner).status_code == 302
    deletion = AccountDeletion.objects.get(user=owner)
    assert accounts_purge_due(now=deletion.purge_after + timedelta(seconds=1)) == 1
    owner.refresh_from_db()
    assert owner.email == erased_email(owner.pk) and not Tenant.objects.filter(user=owner).exists()


def test_the_tenant_page_offers_staff_deletion_but_not_of_oneself(client, staff, owner, owned):
    client.force_login(staff)
    page = client.get(f"/staff/tenants/{owned['tenant'].pk}/").content.decode()
    assert 'data-testid="staff-delete-form"' in page
    own = tenant_start(user=staff)
    assert (
        'data-testid="staff-delete-form"'
        not in client.get(f"/staff/tenants/{own.pk}/").content.decode()
    )
    client.post(f"/staff/accounts/{staff.pk}/delete/", {"reason": "oops"})
    staff.refresh_from_db()
    assert staff.is_active


def test_an_invite_of_a_deleted_account_earns_nothing_while_deleted(owner, stranger, settings):
    settings.INVITE_MIN_AGE_SECONDS = 0
    settings.INVITE_MIN_USAGE_BYTES = 0
    invite = Invite.objects.create(inviter=stranger, invitee=owner, code="abcdefgh")
    tenant_start(user=owner)
    deletion = account_delete(user=owner)
    assert invite_credit(invitee_id=owner.pk) is False
    accounts_purge_due(now=deletion.purge_after + timedelta(seconds=1))
    assert invite_credit(invitee_id=owner.pk) is False
    invite.refresh_from_db()
    assert (
        invite.status == "pending"
        and not Grant.objects.filter(kind__in=["invite", "welcome"]).exists()
    )
