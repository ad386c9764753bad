"""Every page renders in English and in Simplified Chinese, chosen by Accept-Language or cookie.

For each page: the English rendering shows some of our catalogue's strings, and none of those
is still in English on the Chinese rendering (the browser's Accept-Language, and the cookie the
language selector sets, which wins over Accept-Language).
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from accelerator.services import tenant_start
from accounts import services as account_services
from api.services import token_create
from dashboard.services import staff_grant
from quota.periods import floor_hour
from quota.usage import UsageDelta, usage_apply
from tests.conftest import PASSWORD
from tests.i18n.conftest import CJK, ZH, english_left_over

pytestmark = pytest.mark.django_db

GB = 10**9


@pytest.fixture
def world(owner, stranger, staff, django_user_model):
    """An owner with an accelerator, usage, a bonus grant, an invitee and a token."""
    tenant = tenant_start(user=owner)
    usage_apply(deltas=[UsageDelta(tenant.pk, "e1", floor_hour(timezone.now()), 3 * GB, 9, 4)])
    staff_grant(actor=staff, tenant=tenant, bytes=2 * GB, reason="outage")
    friend = django_user_model.objects.create_user(email="friend@example.com", password=PASSWORD)
    account_services.invite_accept(
        invitee=friend, code=account_services.invite_code_get(user=owner)
    )
    token_create(
        scopes=("read", "write"),
        user=owner,
        name="ci",
        expires_at=timezone.now() + timedelta(days=30),
    )
    return {"tenant": tenant}


# (name, url, who is logged in, a Chinese phrase the page must show)
PAGES = [
    ("landing", "/", None, "让 docker pull 重新快起来"),
    ("login", "/accounts/login/", None, "登录"),
    ("signup", "/accounts/signup/", None, "注册"),
    ("password reset", "/accounts/password/reset/", None, "密码"),
    ("password reset sent", "/accounts/password/reset/done/", None, "密码重置"),
    ("verification sent", "/accounts/confirm-email/", None, "验证您的Email地址"),
    ("email addresses", "/accounts/email/", "owner", "Email地址"),
    ("invite refused", "/invite/nosuchcode/", None, "该邀请无法使用"),
    ("console without tenant", "/console/", "stranger", "开通加速器"),
    ("console", "/console/", "owner", "您的加速地址"),
    ("invites", "/invites/", "owner", "邀请好友，获取更多流量"),
    ("tokens", "/console/tokens/", "owner", "您的令牌"),
    ("password change", "/accounts/password/change/", "owner", "密码"),
    ("staff dashboard", "/staff/", "staff", "管理后台"),
    ("staff tenants", "/staff/tenants/", "staff", "租户"),
    ("staff tenant", "/staff/tenants/{tenant}/", "staff", "发放流量"),
    ("staff actions", "/staff/actions/", "staff", "操作记录"),
]


# A refused invite is a page with the reason, answered 404.
STATUS = {"/invite/nosuchcode/": 404}


def _get(client, url: str, **headers):
    resp = client.get(url, headers=headers)
    assert resp.status_code == STATUS.get(url, 200), (url, resp.status_code)
    return resp.content.decode()


@pytest.mark.parametrize("name, url, who, phrase", PAGES, ids=[p[0] for p in PAGES])
def test_page_in_both_languages(client, world, catalogue, request, name, url, who, phrase):
    url = url.format(tenant=world["tenant"].pk)
    if who:
        client.force_login(request.getfixturevalue(who))
    en = _get(client, url, accept_language="en-US,en;q=0.9")
    assert '<html lang="en">' in en
    assert not CJK.search(re.sub(r"<option[^>]*>[^<]*</option>", "", en)), name

    zh = _get(client, url, accept_language="zh-CN,zh;q=0.9")
    assert f'<html lang="{ZH}">' in zh
    assert phrase in zh, name
    shown, left = english_left_over(en, zh, catalogue)
    assert shown >= 3, f"{name}: the English page showed only {shown} catalogue strings"
    assert left == [], f"{name}: still English in Chinese: {left}"

    # The selector's cookie wins over the browser's Accept-Language.
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = ZH
    by_cookie = _get(client, url, accept_language="en-US,en;q=0.9")
    assert f'<html lang="{ZH}">' in by_cookie and phrase in by_cookie


@pytest.mark.parametrize("accept", ["zh-Hans", "zh-CN", "zh-SG", "zh-hans-CN", "zh"])
def test_every_simplified_chinese_browser_gets_chinese(client, accept):
    page = _get(client, "/", accept_language=accept)
    assert f'<html lang="{ZH}">' in page and "免费注册" in page


@pytest.mark.parametrize("accept", ["", "fr-FR,fr", "de", "xx;q=1", "*"])
def test_other_browsers_get_english(client, accept):
    page = _get(client, "/", accept_language=accept)
    assert '<html lang="en">' in page and "Sign up free" in page


def test_api_docs_page_and_schema_in_both_languages(client):
    en = _get(client, "/api/docs/", accept_language="en")
    assert "<title>Mirror Accelerator API</title>" in en
    zh = _get(client, "/api/docs/", accept_language=ZH)
    assert "<title>镜像加速器 API</title>" in zh
    # Swagger UI fetches the schema with the browser's language (or ?lang=).
    schema = client.get(
        "/api/schema/", headers={"accept": "application/json", "accept-language": ZH}
    ).json()
    assert schema["info"]["title"] == "镜像加速器 API"
    assert CJK.search(schema["info"]["description"])
    by_param = client.get("/api/schema/?lang=zh-hans", headers={"accept": "application/json"})
    assert by_param.json()["info"]["title"] == "镜像加速器 API"
    english = client.get("/api/schema/", headers={"accept": "application/json"}).json()
    assert english["info"]["title"] == "Mirror Accelerator API"


def test_the_selector_lists_both_languages_and_marks_the_current_one(client):
    page = _get(client, "/", accept_language=ZH)
    options = re.findall(r'<option value="([^"]+)"( selected)?>([^<]+)</option>', page)
    assert options == [("en", "", "English"), (ZH, " selected", "简体中文")]


SKIP_LINKS = ("/admin/", "/static/", "/api/schema/", "/api/v1/", "/accounts/logout/")


def test_every_page_linked_from_the_site_is_translated(client, world, staff, catalogue):
    """Follows every same-site link from the landing page, the console and the dashboard (as a
    staff user with an accelerator), so pages added later are checked too."""
    tenant_start(user=staff)
    client.force_login(staff)
    queue, seen, checked = ["/", "/console/", "/staff/"], set(), []
    while queue and len(seen) < 80:
        url = queue.pop(0)
        if url in seen:
            continue
        seen.add(url)
        en = client.get(url, headers={"accept-language": "en"})
        if en.status_code != 200 or not en["Content-Type"].startswith("text/html"):
            continue
        zh = client.get(url, headers={"accept-language": ZH})
        en_html, zh_html = en.content.decode(), zh.content.decode()
        if "<html" not in en_html:  # an HTML fragment or a third-party page
            continue
        shown, left = english_left_over(en_html, zh_html, catalogue)
        assert left == [], f"{url}: still English in Chinese: {left}"
        assert CJK.search(zh_html), url
        checked.append(url)
        for href in re.findall(r'<a [^>]*href="([^"#]+)"', en_html):
            href = href.replace("&amp;", "&")
            if href.startswith("/") and not href.startswith(SKIP_LINKS):
                queue.append(href)
    # The pages of the parametrized test above are reachable by links.
    assert {"/console/", "/invites/", "/console/tokens/", "/staff/", "/staff/actions/"} <= set(
        checked
    ), checked
    assert len(checked) >= 8, checked
