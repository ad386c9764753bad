"""The ledger's and the invites' admin pages are read-only views for staff."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/admin/quota/usagemonth/",
        "/admin/quota/quotanotice/",
        "/admin/accounts/invite/",
        "/admin/accounts/inviteemail/",
    ],
)
def test_superuser_sees_read_only_lists(client, django_user_model, path):
    admin = django_user_model.objects.create_superuser(email="root@example.com", password="x")
    client.force_login(admin)
    response = client.get(path)
    assert response.status_code == 200
    assert client.get(path + "add/").status_code == 403


def test_a_normal_user_is_sent_to_the_admin_login(owner_client):
    response = owner_client.get("/admin/accounts/invite/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
