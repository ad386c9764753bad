"""Choosing the language: browser, selector (cookie), the account; forms, API errors, formats."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import formats, timezone, translation

from api.services import token_create
from quota.templatetags.quota import si_bytes
from tests.i18n.conftest import ZH

pytestmark = pytest.mark.django_db

COOKIE = settings.LANGUAGE_COOKIE_NAME
SETLANG = reverse("set_language")


def _lang(resp) -> str:
    return re.search(r'<html lang="([^"]+)">', resp.content.decode())[1]


# --- visitors -----------------------------------------------------------------------------------


def test_visitor_switches_with_the_selector_and_the_cookie_remembers_it(client):
    assert _lang(client.get("/", headers={"accept-language": "en"})) == "en"
    resp = client.post(SETLANG, {"language": ZH, "next": "/console/tokens/?a=1"})
    assert resp.status_code == 302 and resp["Location"] == "/console/tokens/?a=1"
    cookie = resp.cookies[COOKIE]
    assert cookie.value == ZH
    assert int(cookie["max-age"]) == settings.LANGUAGE_COOKIE_AGE >= 30 * 24 * 3600
    page = client.get("/", headers={"accept-language": "en"})
    assert _lang(page) == ZH and "免费注册" in page.content.decode()
    assert page["Content-Language"] == ZH
    assert "Accept-Language" in page["Vary"]
    # And back.
    client.post(SETLANG, {"language": "en", "next": "/"})
    assert _lang(client.get("/", headers={"accept-language": ZH})) == "en"


@pytest.mark.parametrize("language", ["", "xx", "zh-hant", "fr", "<script>", "e" * 500])
def test_selector_refuses_unknown_languages_and_changes_nothing(client, owner, language):
    client.force_login(owner)
    resp = client.post(SETLANG, {"language": language, "next": "/console/"})
    assert resp.status_code == 302 and resp["Location"] == "/console/"
    assert COOKIE not in resp.cookies
    owner.refresh_from_db()
    assert owner.language == ""
    assert _lang(client.get("/console/", headers={"accept-language": "en"})) == "en"


def test_selector_is_post_only_and_never_redirects_off_site(client):
    assert client.get(SETLANG, {"language": ZH}).status_code == 405
    resp = client.post(SETLANG, {"language": ZH, "next": "https://evil.example/"})
    assert resp.status_code == 302 and resp["Location"] == "/"
    resp = client.post(SETLANG, {"language": ZH})  # no next, no referer
    assert resp.status_code == 302 and resp["Location"] == "/"


# --- logged-in users ----------------------------------------------------------------------------


def test_logged_in_choice_is_saved_on_the_account_and_follows_the_user(client, owner):
    from django.test import Client

    client.force_login(owner)
    client.post(SETLANG, {"language": ZH, "next": "/console/"})
    owner.refresh_from_db()
    assert owner.language == ZH
    # Another browser: no cookie, an English Accept-Language; after login, Chinese.
    other = Client()
    assert _lang(other.get("/", headers={"accept-language": "en"})) == "en"
    other.force_login(owner)
    console = other.get("/console/", headers={"accept-language": "en"})
    assert _lang(console) == ZH and "开通加速器" in console.content.decode()
    assert console["Content-Language"] == ZH


def test_saved_language_wins_over_accept_language_and_cookie(client, owner):
    owner.language = "en"
    owner.save(update_fields=["language"])
    client.force_login(owner)
    client.cookies[COOKIE] = ZH
    page = client.get("/console/", headers={"accept-language": "zh-CN,zh;q=0.9"})
    assert _lang(page) == "en" and "Start your accelerator" in page.content.decode()


def test_without_a_saved_language_the_browser_decides(client, owner):
    client.force_login(owner)
    assert _lang(client.get("/console/", headers={"accept-language": "zh-CN"})) == ZH
    assert _lang(client.get("/console/", headers={"accept-language": "en"})) == "en"


# --- form errors and API errors -------------------------------------------------------------


def test_login_error_in_chinese(client, owner):
    data = {"login": owner.email, "password": "wrong password"}
    zh = client.post(reverse("account_login"), data, headers={"accept-language": ZH})
    assert zh.status_code == 200
    errors = re.findall(r'<ul class="errorlist[^"]*">(.*?)</ul>', zh.content.decode(), re.S)
    assert errors and re.search(r"[\u4e00-\u9fff]", errors[0]), errors
    en = client.post(reverse("account_login"), data, headers={"accept-language": "en"})
    assert "not correct" in en.content.decode()


def test_form_errors_in_chinese(owner_client):
    bad = owner_client.post(reverse("invites"), {"email": "nope"}, headers={"accept-language": ZH})
    assert bad.status_code == 400
    assert "有效" in bad.content.decode()  # Django's own message, from its zh_Hans catalogue
    itself = owner_client.post(
        reverse("invites"), {"email": "owner@example.com"}, headers={"accept-language": ZH}
    )
    assert itself.status_code == 400 and "不能邀请自己。" in itself.content.decode()
    english = owner_client.post(reverse("invites"), {"email": "owner@example.com"})
    assert "You cannot invite yourself." in english.content.decode()


def test_api_errors_follow_the_language(client, owner):
    # DRF's own messages (its zh_Hans catalogue).
    anon = client.get("/api/v1/quota/", headers={"accept-language": ZH})
    assert anon.status_code in (401, 403)
    assert re.search(r"[\u4e00-\u9fff]", anon.json()["detail"])
    assert "credentials" in client.get("/api/v1/quota/").json()["detail"]
    # Ours: no accelerator yet; a malformed token; a token where only a session may act.
    token = token_create(
        scopes=("read", "write"),
        user=owner,
        name="t",
        expires_at=timezone.now() + timedelta(days=1),
    )
    bearer = {"authorization": f"Bearer {token.secret}"}
    none = client.get("/api/v1/quota/", headers={**bearer, "accept-language": ZH})
    assert none.status_code == 404 and none.json()["detail"] == "请先开通您的加速器。"
    none_en = client.get("/api/v1/quota/", headers={**bearer, "accept-language": "en"})
    assert none_en.json()["detail"] == "Start your accelerator first."
    bad = client.get("/api/v1/quota/", headers={"authorization": "Bearer", "accept-language": ZH})
    assert bad.status_code == 401 and "Authorization 请求头格式错误" in bad.json()["detail"]
    session_only = client.get("/api/v1/tokens/", headers={**bearer, "accept-language": ZH})
    assert session_only.status_code == 403
    assert session_only.json()["detail"] == "请在已登录的浏览器中管理令牌。"


def test_api_validation_errors_follow_the_language(client, owner):
    from accelerator.services import tenant_start

    tenant_start(user=owner)
    token = token_create(
        scopes=("read", "write"),
        user=owner,
        name="t",
        expires_at=timezone.now() + timedelta(days=1),
    )
    headers = {"authorization": f"Bearer {token.secret}", "accept-language": ZH}
    resp = client.get("/api/v1/usage/?start=2026-02-01&end=2026-01-01", headers=headers)
    assert resp.status_code == 400
    assert "结束日期早于起始日期。" in str(resp.json())
    resp = client.get("/api/v1/usage/?start=yesterday&end=2026-01-01", headers=headers)
    assert resp.status_code == 400 and re.search(r"[\u4e00-\u9fff]", str(resp.json()))


# --- numbers, byte sizes, dates -------------------------------------------------------------


def test_byte_sizes_use_the_locales_number_format():
    with translation.override(ZH):
        assert si_bytes(1_500_000_000) == "1.5 GB"
        assert si_bytes(10**10) == "10 GB"
    with translation.override("en"):
        assert si_bytes(12_345_678_901) == "12.3 GB"
    # A locale with a decimal comma shows that the number really is localised.
    with translation.override("de"):
        assert si_bytes(1_500_000_000) == "1,5 GB"
        assert si_bytes(999) == "999 B"


def test_dates_use_the_locales_format(owner_client, owner):
    from accelerator.services import tenant_start
    from quota.month import month_summary

    resets = month_summary(tenant=tenant_start(user=owner)).resets_at
    zh = owner_client.get("/console/", headers={"accept-language": ZH}).content.decode()
    en = owner_client.get("/console/", headers={"accept-language": "en"}).content.decode()
    zh_date = f"{resets.year}年{resets.month}月{resets.day}日"
    assert zh_date in zh and zh_date not in en
    with translation.override("en"):
        assert formats.date_format(resets, "DATE_FORMAT") in en
    assert resets.strftime("%b") in en  # "Dec. 1, 2026": the month by name


def test_counts_are_grouped_in_both_languages():
    from django.contrib.humanize.templatetags.humanize import intcomma

    for language in ("en", ZH):
        with translation.override(language):
            assert intcomma(1234567) == "1,234,567"


# --- text stored for later ----------------------------------------------------------------------


def test_invite_bonus_notes_are_written_in_each_receivers_language(
    owner, django_user_model, settings
):
    from allauth.account.models import EmailAddress

    # The real-use thresholds have their own tests (tests/accounts/test_invite_rules.py).
    settings.INVITE_MIN_USAGE_BYTES, settings.INVITE_MIN_AGE_SECONDS = 1, 0

    from accelerator.services import tenant_start
    from accounts import services as account_services
    from quota.invites import invite_credit
    from quota.models import Grant
    from quota.periods import floor_hour
    from quota.usage import UsageDelta, usage_apply

    owner.language = ZH
    owner.save(update_fields=["language"])
    friend = django_user_model.objects.create_user(
        email="friend@example.com", password="x", language="en"
    )
    EmailAddress.objects.create(user=friend, email=friend.email, verified=True, primary=True)
    account_services.invite_accept(
        invitee=friend, code=account_services.invite_code_get(user=owner)
    )
    tenant = tenant_start(user=friend)
    usage_apply(deltas=[UsageDelta(tenant.pk, "e1", floor_hour(timezone.now()), 1000, 1)])
    # Credited by a worker (no request) whose active language is neither's.
    with translation.override("de"):
        assert invite_credit(invitee_id=friend.pk) is True
    notes = dict(Grant.objects.values_list("kind", "note"))
    assert notes[Grant.Kind.INVITE] == "邀请奖励：fr****@example.com 已加入"
    assert notes[Grant.Kind.WELCOME] == "Welcome bonus: you joined through an invite"
