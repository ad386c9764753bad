"""/admin/ signs in only through allauth's login, so its per-address limits hold for staff."""

from __future__ import annotations

from django.urls import reverse

from tests.conftest import PASSWORD


def _logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_admin_login_is_allauths_login(client, staff):
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login") + "?next=")
    # Django's own admin form takes no password: a POST lands on the same redirect.
    response = client.post(
        "/admin/login/?next=/admin/", {"username": staff.email, "password": PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))
    assert not _logged_in(client)


def test_admin_login_is_throttled_like_every_login(client, staff):
    # 40 guesses at Django's own admin form (issue 14: then the right one logged in) ...
    for n in range(40):
        client.post("/admin/login/", {"username": staff.email, "password": f"wrong-{n}"})
    # ... never reach a password check; the right one does not log in either.
    client.post("/admin/login/", {"username": staff.email, "password": PASSWORD})
    assert not _logged_in(client)
    # Where the admin sends them, ten failures from one address stop that address.
    for n in range(10):
        client.post(reverse("account_login"), {"login": f"x{n}@example.com", "password": "no"})
    response = client.post(
        reverse("account_login") + "?next=/admin/", {"login": staff.email, "password": PASSWORD}
    )
    assert not _logged_in(client)
    assert b"Too many failed login attempts" in response.content
    # The admin itself never shows to a visitor.
    assert client.get("/admin/").status_code == 302


def test_staff_reach_the_admin_after_allauths_login(client, staff):
    response = client.post(
        reverse("account_login") + "?next=/admin/", {"login": staff.email, "password": PASSWORD}
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_a_logged_in_non_staff_user_gets_403_not_the_admin_form(owner_client):
    assert owner_client.get("/admin/login/").status_code == 403
