"""Sign-up, verification and login through allauth, with the wrong inputs a user can type."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts.models import User
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def signup(client: Client, email: str, password: str = PASSWORD, password2: str | None = None):
    return client.post(
        reverse("account_signup"),
        {"email": email, "password1": password, "password2": password2 or password},
    )


def confirmation_link(message) -> str:
    match = re.search(r"https?://[^\s]+/accounts/confirm-email/[^\s]+/", message.body)
    assert match, message.body
    return match.group(0)


def test_signup_sends_verification_and_login_waits_for_it(client):
    response = signup(client, "New.User@Example.com")
    assert response.status_code == 302
    user = User.objects.get()
    assert user.email == "new.user@example.com"
    assert not EmailAddress.objects.get(user=user).verified
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["new.user@example.com"]

    # Not verified: the console stays closed.
    client.logout()
    response = client.post(
        reverse("account_login"), {"login": "new.user@example.com", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert response.url == reverse("account_email_verification_sent")
    assert client.get(reverse("console")).status_code == 302

    # Following the link verifies the address; then login opens the console.
    link = confirmation_link(mail.outbox[-1])
    path = link.split("://", 1)[1].split("/", 1)[1]
    assert client.post("/" + path).status_code == 302
    assert EmailAddress.objects.get(user=user).verified
    response = client.post(
        reverse("account_login"), {"login": "NEW.USER@example.com", "password": PASSWORD}
    )
    assert response.status_code == 302 and response.url == reverse("console")
    assert client.get(reverse("console")).status_code == 200


def test_email_differing_only_in_case_is_refused(client, owner):
    """No second account. allauth does not reveal which addresses have accounts (enumeration
    protection): the form answers as for a new address and the mailbox owner is told instead."""
    response = signup(client, "OWNER@EXAMPLE.COM")
    assert response.status_code == 302
    assert User.objects.count() == 1
    assert mail.outbox[-1].to == ["owner@example.com"]
    assert "already" in mail.outbox[-1].body


def test_database_refuses_case_variant_even_without_the_form(owner):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(email="Owner@Example.com")


@pytest.mark.parametrize(
    "email", ["", "not-an-email", "a@", "@example.com", "a b@example.com", "x" * 250 + "@e.io"]
)
def test_malformed_emails_are_refused(client, email):
    response = signup(client, email)
    assert response.status_code == 200
    assert response.context["form"].errors.get("email")
    assert User.objects.count() == 0


@pytest.mark.parametrize(
    "password, message",
    [
        ("short1", "too short"),
        ("password123", "too common"),
        ("8374659201", "entirely numeric"),
        ("weird@example.com", "too similar"),
    ],
)
def test_weak_passwords_are_refused(client, password, message):
    response = signup(client, "weird@example.com", password)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert User.objects.count() == 0


def test_mismatched_passwords_are_refused(client):
    response = signup(client, "a@example.com", PASSWORD, PASSWORD + "x")
    assert response.status_code == 200
    assert "same password" in response.content.decode()
    assert User.objects.count() == 0


def test_wrong_password_is_refused_and_rate_limited(client, owner):
    url = reverse("account_login")
    statuses = []
    for _ in range(7):
        response = client.post(url, {"login": owner.email, "password": "wrong-password-1"})
        statuses.append(response.status_code)
        assert "_auth_user_id" not in client.session
    body = client.post(url, {"login": owner.email, "password": PASSWORD}).content.decode()
    assert "Too many failed login attempts" in body
    assert "_auth_user_id" not in client.session


def test_post_without_csrf_token_is_refused(owner):
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("account_login"), {"login": owner.email, "password": PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session
    client.force_login(owner)
    assert client.post(reverse("accelerator_start")).status_code == 403
    assert not hasattr(User.objects.get(pk=owner.pk), "tenant")


@pytest.mark.parametrize("name", ["console", "accelerator_start", "account_change_password"])
def test_pages_need_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_login"))


@pytest.mark.parametrize(
    "name", ["landing", "account_login", "account_signup", "account_reset_password"]
)
def test_public_pages_open_without_login(client, name):
    assert client.get(reverse(name)).status_code == 200


def test_password_reset_sends_a_mail_only_to_known_addresses(client, owner):
    client.post(reverse("account_reset_password"), {"email": "OWNER@example.com"})
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["owner@example.com"]
    assert "password" in mail.outbox[0].subject.lower()
