"""Invites: codes, the link and ?invite= at sign-up, every refusal, invite emails."""

from __future__ import annotations

from datetime import timedelta

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accelerator.services import tenant_start, tenant_suspend
from accounts import services
from accounts.models import Invite, InviteEmail, User
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def signup(client, email):
    return client.post(
        reverse("account_signup"), {"email": email, "password1": PASSWORD, "password2": PASSWORD}
    )


# --- codes ------------------------------------------------------------------------------------


def test_each_user_gets_one_random_url_safe_code(owner, stranger):
    code = services.invite_code_get(user=owner)
    assert services.CODE_RE.match(code)
    assert services.invite_code_get(user=owner) == code
    assert User.objects.get(pk=owner.pk).invite_code == code
    assert services.invite_code_get(user=stranger) != code


def test_the_link_records_the_inviter_at_signup(client, owner):
    code = services.invite_code_get(user=owner)
    response = client.get(f"/invite/{code}")
    assert response.status_code == 302 and response["Location"] == reverse("account_signup")
    page = client.get(reverse("account_signup"))
    assert "ow***@example.com invited you" in page.content.decode()
    assert signup(client, "friend@example.com").status_code == 302
    invite = Invite.objects.get()
    assert (invite.inviter, invite.invitee.email, invite.code) == (
        owner,
        "friend@example.com",
        code,
    )
    assert invite.credited_at is None


def test_the_link_with_a_trailing_slash_works(client, owner):
    code = services.invite_code_get(user=owner)
    assert client.get(f"/invite/{code}/").status_code == 302


def test_the_invite_query_parameter_on_signup_records_the_inviter(client, owner):
    code = services.invite_code_get(user=owner)
    page = client.get(reverse("account_signup") + f"?invite={code}")
    assert page.status_code == 200
    signup(client, "friend@example.com")
    assert Invite.objects.get().inviter == owner


def test_signup_without_invite_records_none(client):
    signup(client, "alone@example.com")
    assert User.objects.filter(email="alone@example.com").exists()
    assert not Invite.objects.exists()


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "reason"),
    [
        ("", 400, "malformed"),
        ("short", 400, "malformed"),
        ("x" * 33, 400, "malformed"),
        ("bad code!!", 400, "malformed"),
        ("%00%00%00%00%00%00%00%00", 400, "malformed"),
        ("UnknownCode123", 404, "unknown"),
    ],
)
def test_bad_codes_are_refused_with_a_message(client, code, status, reason):
    response = client.get(f"/invite/{code}")
    assert response.status_code == status
    assert f'data-reason="{reason}"' in response.content.decode()
    assert "invite_code" not in client.session
    signup(client, "friend@example.com")
    assert not Invite.objects.exists()


def test_a_deleted_users_code_is_unknown(client, django_user_model):
    gone = django_user_model.objects.create_user(email="gone@example.com", password=PASSWORD)
    code = services.invite_code_get(user=gone)
    gone.delete()
    response = client.get(f"/invite/{code}")
    assert response.status_code == 404
    assert "not valid" in response.content.decode()


def test_a_deactivated_or_suspended_users_code_is_refused(client, owner, stranger):
    owner.is_active = False
    owner.save()
    tenant_suspend(tenant=tenant_start(user=stranger), reason="abuse")
    for user in (owner, stranger):
        response = client.get(f"/invite/{services.invite_code_get(user=user)}")
        assert response.status_code == 410
        assert "no longer works" in response.content.decode()
    assert "invite_code" not in client.session


def test_a_suspension_after_the_click_refuses_at_signup(client, owner):
    code = services.invite_code_get(user=owner)
    client.get(f"/invite/{code}")
    tenant_suspend(tenant=tenant_start(user=owner), reason="abuse")
    response = signup(client, "friend@example.com")
    assert response.status_code == 302
    assert User.objects.filter(email="friend@example.com").exists()  # sign-up goes on
    assert not Invite.objects.exists()


def test_an_unknown_query_code_is_refused_on_the_signup_page(client):
    page = client.get(reverse("account_signup") + "?invite=UnknownCode123")
    assert "This invite link is not valid" in page.content.decode()
    signup(client, "friend@example.com")
    assert not Invite.objects.exists()


def test_self_invite_is_refused(owner_client, owner):
    response = owner_client.get(f"/invite/{services.invite_code_get(user=owner)}")
    assert response.status_code == 403
    assert "cannot invite yourself" in response.content.decode()
    with pytest.raises(services.InviteRefused) as refused:
        services.invite_accept(invitee=owner, code=services.invite_code_get(user=owner))
    assert refused.value.reason == services.SELF
    assert not Invite.objects.exists()


def test_a_second_inviter_is_refused(client, owner, stranger, django_user_model):
    friend = django_user_model.objects.create_user(email="friend@example.com", password=PASSWORD)
    services.invite_accept(invitee=friend, code=services.invite_code_get(user=owner))
    with pytest.raises(services.InviteRefused) as refused:
        services.invite_accept(invitee=friend, code=services.invite_code_get(user=stranger))
    assert refused.value.reason == services.SECOND
    client.force_login(friend)
    response = client.get(f"/invite/{services.invite_code_get(user=stranger)}")
    assert response.status_code == 403
    assert "already invited by someone else" in response.content.decode()
    assert Invite.objects.get().inviter == owner


def test_an_existing_account_cannot_gain_an_inviter(owner_client, stranger):
    response = owner_client.get(f"/invite/{services.invite_code_get(user=stranger)}")
    assert response.status_code == 403
    assert "Invites are for new accounts" in response.content.decode()
    assert not Invite.objects.exists()


def test_the_link_only_answers_get(client, owner):
    code = services.invite_code_get(user=owner)
    assert client.post(f"/invite/{code}").status_code == 405


# --- the invites page and emails ----------------------------------------------------------------


def test_the_invites_page_needs_a_login(client):
    response = client.get(reverse("invites"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_invites_page_shows_the_link_and_only_my_invitees(
    owner_client, owner, stranger, django_user_model
):
    mine = django_user_model.objects.create_user(email="mine@example.com", password=PASSWORD)
    EmailAddress.objects.create(user=mine, email=mine.email, verified=True, primary=True)
    theirs = django_user_model.objects.create_user(email="theirs@example.com", password=PASSWORD)
    services.invite_accept(invitee=mine, code=services.invite_code_get(user=owner))
    services.invite_accept(invitee=theirs, code=services.invite_code_get(user=stranger))
    html = owner_client.get(reverse("invites")).content.decode()
    assert f"http://testserver/invite/{services.invite_code_get(user=owner)}" in html
    assert 'data-copy="#invite-link"' in html
    assert "mi**@example.com" in html
    assert "th****@example.com" not in html
    assert "1 signed up, 0 of at most 50 credited, 0 B earned" in html


def test_an_invite_email_is_sent_with_the_link(
    owner_client, owner, eager_tasks, django_capture_on_commit_callbacks
):
    with_link = f"http://testserver/invite/{services.invite_code_get(user=owner)}"
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(reverse("invites"), {"email": " Friend@Example.com "})
    assert response.status_code == 302
    assert InviteEmail.objects.get().email == "friend@example.com"
    (message,) = mail.outbox
    assert message.to == ["friend@example.com"]
    assert "owner@example.com" in message.subject
    assert with_link in message.body
    page = owner_client.get(reverse("invites")).content.decode()
    assert "Invite sent to friend@example.com" in page
    assert "1 of 20 invite emails sent" in page


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("", "This field is required"),
        ("not-an-address", "Enter a valid email address"),
        ("a@b", "Enter a valid email address"),
        ("x" * 250 + "@example.com", "at most 254 characters"),
    ],
)
def test_wrong_invite_emails_are_refused(owner_client, stranger, eager_tasks, email, message):
    response = owner_client.post(reverse("invites"), {"email": email})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not InviteEmail.objects.exists()
    assert mail.outbox == []


def test_oneself_is_refused_and_counted(owner_client, owner, eager_tasks):
    response = owner_client.post(reverse("invites"), {"email": "Owner+x@example.com"})
    assert response.status_code == 400
    assert "cannot invite yourself" in response.content.decode()
    assert InviteEmail.objects.get().outcome == "self"
    assert mail.outbox == []


def test_an_address_with_an_unconfirmed_allauth_email_gets_no_email(owner, django_user_model):
    other = django_user_model.objects.create_user(email="main@example.com", password=PASSWORD)
    EmailAddress.objects.create(user=other, email="second@example.com", verified=False)
    record = services.invite_email_send(inviter=owner, email="second@example.com", link="x")
    assert record.outcome == "has_account"


def test_at_most_20_invite_emails_a_day_and_one_per_address(
    owner, eager_tasks, django_capture_on_commit_callbacks
):
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(20):
            services.invite_email_send(inviter=owner, email=f"f{i}@example.com", link="L", now=now)
    with pytest.raises(services.InviteRefused) as refused:
        services.invite_email_send(inviter=owner, email="f20@example.com", link="L", now=now)
    assert refused.value.reason == "rate_limited"
    assert "at most 20" in str(refused.value.message)
    later = now + timedelta(days=1, seconds=1)
    with pytest.raises(services.InviteRefused) as refused:
        services.invite_email_send(inviter=owner, email="f0@example.com", link="L", now=now)
    assert refused.value.reason == "duplicate"
    with django_capture_on_commit_callbacks(execute=True):
        services.invite_email_send(inviter=owner, email="f20@example.com", link="L", now=later)
    assert InviteEmail.objects.count() == 21
    assert len(mail.outbox) == 21


def test_the_email_form_limit_shows_in_the_page(
    owner_client, owner, eager_tasks, settings, django_capture_on_commit_callbacks
):
    settings.INVITE_EMAILS_PER_DAY = 1
    with django_capture_on_commit_callbacks(execute=True):
        owner_client.post(reverse("invites"), {"email": "a@example.com"})
        response = owner_client.post(reverse("invites"), {"email": "b@example.com"})
    assert response.status_code == 400
    assert "at most 1 invite emails a day" in response.content.decode()
    assert len(mail.outbox) == 1


def test_the_nav_links_to_the_invites_page(owner_client):
    html = owner_client.get(reverse("console")).content.decode()
    assert f'href="{reverse("invites")}"' in html


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    """Sign-up hashes passwords; the invite rules do not depend on the hasher's cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
