"""The account page: in the header, every section, both languages; the language it saves."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_header_links_to_the_account_page(owner_client):
    page = owner_client.get("/console/")
    assert b'href="/account/"' in page.content
    assert b'data-testid="nav-account"' in page.content


def test_account_page_has_every_section(owner_client, owner):
    page = owner_client.get("/account/")
    assert page.status_code == 200
    html = page.content.decode()
    for testid in (
        "account-email",
        "account-password",
        "account-language",
        "account-2fa",
        "account-export",
        "account-delete",
    ):
        assert f'data-testid="{testid}"' in html
    assert owner.email in html
    assert 'href="/accounts/email/"' in html
    assert 'href="/accounts/2fa/"' in html
    assert "<script>" not in html.split("<main")[1]  # no inline script (CSP)
    assert "style=" not in html.split("<main")[1]


def test_account_page_in_chinese(owner_client, owner):
    owner.language = "zh-hans"
    owner.save(update_fields=["language"])
    html = owner_client.get("/account/").content.decode()
    assert "你的账户" in html and "双重验证" in html and "删除账户" in html


def test_visitor_is_sent_to_login(client):
    page = client.get("/account/")
    assert page.status_code == 302 and "/accounts/login/" in page["Location"]


@pytest.mark.parametrize("value", ["fr", "zh-hant", "", "x" * 500, "en\x00"])
def test_language_form_refuses_other_values(owner_client, owner, value):
    before = owner.language
    resp = owner_client.post("/i18n/setlang/", {"language": value, "next": "/account/"})
    assert resp.status_code in (302, 400)
    owner.refresh_from_db()
    assert owner.language == before


def test_language_form_saves_the_choice(owner_client, owner):
    resp = owner_client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/account/"})
    assert resp.status_code == 302 and resp["Location"] == "/account/"
    owner.refresh_from_db()
    assert owner.language == "zh-hans"
