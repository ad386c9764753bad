"""Changing the address through allauth's email page: the old address logs in until the new
one is verified and made primary; the one-mailbox rule holds for added addresses."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail

from accounts.models import User
from tests.selfservice.conftest import password_login

pytestmark = pytest.mark.django_db


def _logout_login(client, email):
    client.post("/accounts/logout/")
    password_login(client, email)
    return "_auth_user_id" in client.session


def test_change_through_verification(logged_in, client, owner):
    resp = logged_in.post("/accounts/email/", {"action_add": "", "email": "New@Example.org"})
    assert resp.status_code == 302
    added = EmailAddress.objects.get(user=owner, email="new@example.org")
    assert not added.verified and not added.primary
    # Not verified: it cannot be made primary, and the old address still logs in.
    logged_in.post("/accounts/email/", {"action_primary": "", "email": "new@example.org"})
    owner.refresh_from_db()
    assert owner.email == "owner@example.com"
    assert _logout_login(client, "owner@example.com")
    # Verify from the email, then make it primary.
    link = re.search(r"https?://\S+(/accounts/confirm-email/\S+/)", mail.outbox[-1].body).group(1)
    client.post(link)
    assert EmailAddress.objects.get(user=owner, email="new@example.org").verified
    client.post("/accounts/email/", {"action_primary": "", "email": "new@example.org"})
    owner.refresh_from_db()
    assert owner.email == "new@example.org"
    assert owner.email_canonical == "new@example.org"
    assert _logout_login(client, "new@example.org")


def test_an_alias_of_another_accounts_mailbox_is_not_added(logged_in, owner, stranger):
    logged_in.post("/accounts/email/", {"action_add": "", "email": "Stranger+x@example.com"})
    assert not EmailAddress.objects.filter(user=owner, email__icontains="stranger").exists()
    # The owner of that mailbox is told, not the one who typed it.
    assert mail.outbox[-1].to == ["stranger@example.com"]


@pytest.mark.parametrize("email", ["", "not-an-address", "a@" + "b" * 300 + ".com", "x\x00@y.com"])
def test_hostile_addresses_are_refused(logged_in, owner, email):
    resp = logged_in.post("/accounts/email/", {"action_add": "", "email": email})
    assert resp.status_code == 200
    assert EmailAddress.objects.filter(user=owner).count() == 1
    assert User.objects.get(pk=owner.pk).email == "owner@example.com"
