"""Every email in both languages: verification, password reset, invite, quota thresholds.

Emails sent during a request follow the account's saved language, else the request's; emails
sent by tasks follow the account's saved language (an account keeps the language it signed up
in until the selector changes it); an invite email follows the inviter's current language.
"""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.core import mail
from django.urls import reverse
from django.utils import formats, timezone, translation

from accelerator.services import tenant_start
from accounts import services as account_services
from accounts.models import InviteEmail
from quota.enforcement import tenant_enforce
from quota.models import QuotaNotice
from quota.month import month_summary
from quota.notices import notice_send
from quota.periods import floor_hour
from tests.conftest import PASSWORD
from tests.i18n.conftest import CJK, ZH
from tests.quota.conftest import use

pytestmark = pytest.mark.django_db

EN_HEADERS = {"accept_language": "en-US,en;q=0.9"}
ZH_HEADERS = {"accept_language": "zh-CN,zh;q=0.9"}


PREFIX = {"en": "[Mirror Accelerator] ", ZH: "[镜像加速器] "}


def _only_mail(language: str | None = None):
    assert len(mail.outbox) == 1, [m.subject for m in mail.outbox]
    message = mail.outbox[0]
    mail.outbox.clear()
    if language:  # the brand in the subject is in the reader's language too
        assert message.subject.startswith(PREFIX[language]), message.subject
    return message


@pytest.mark.parametrize("language", ["en", ZH])
def test_signup_verification_email_and_the_saved_language(client, django_user_model, language):
    headers = ZH_HEADERS if language == ZH else EN_HEADERS
    resp = client.post(
        reverse("account_signup"),
        {"email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD},
        headers=headers,
    )
    assert resp.status_code == 302
    message = _only_mail(language)
    link = re.search(r"https?://\S+/accounts/confirm-email/\S+/", message.body)
    assert link, message.body
    if language == ZH:
        assert CJK.search(message.subject) and "您好，这里是镜像加速器！" in message.body
    else:
        assert not CJK.search(message.subject + message.body)
        assert "Hello from Mirror Accelerator!" in message.body
        assert "confirm" in message.body.lower()
    # The account remembers the language it was created in (for emails sent later by tasks).
    assert django_user_model.objects.get(email="new@example.com").language == language


@pytest.mark.parametrize("saved", ["en", ZH])
def test_password_reset_email_follows_the_saved_language_over_the_browser(client, owner, saved):
    owner.language = saved
    owner.save(update_fields=["language"])
    # The browser asks for the other language: the account's choice wins.
    headers = EN_HEADERS if saved == ZH else ZH_HEADERS
    resp = client.post(reverse("account_reset_password"), {"email": owner.email}, headers=headers)
    assert resp.status_code == 302
    message = _only_mail(saved)
    assert "/accounts/password/reset/key/" in message.body
    assert bool(CJK.search(message.subject + message.body)) == (saved == ZH)


def test_password_reset_email_without_a_saved_language_follows_the_browser(client, owner):
    assert owner.language == ""
    client.post(reverse("account_reset_password"), {"email": owner.email}, headers=ZH_HEADERS)
    assert CJK.search(_only_mail().body)
    client.post(reverse("account_reset_password"), {"email": owner.email}, headers=EN_HEADERS)
    assert not CJK.search(_only_mail().body)


@pytest.mark.parametrize("language", ["en", ZH])
def test_invite_email_in_the_inviters_current_language(
    owner_client, owner, eager_tasks, django_capture_on_commit_callbacks, language
):
    owner_client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    with django_capture_on_commit_callbacks(execute=True):
        resp = owner_client.post(reverse("invites"), {"email": "friend@example.com"})
    assert resp.status_code == 302
    message = _only_mail(language)
    link = f"/invite/{account_services.invite_code_get(user=owner)}"
    assert link in message.body and owner.email in message.subject
    base = f"{settings.QUOTA_MONTHLY_BYTES // 10**9} GB"
    assert base in message.body  # the byte size is formatted in both languages
    if language == ZH:
        assert "邀请您体验更快的 docker pull" in message.subject
        assert "新人奖励流量" in message.body
    else:
        assert "invites you to a faster docker pull" in message.subject
        assert not CJK.search(message.subject + message.body)
    # The confirmation on the page is in the same language.
    page = owner_client.get(reverse("invites")).content.decode()
    assert ("邀请已发送至" in page) == (language == ZH)


def test_invite_email_sent_later_by_a_retry_keeps_its_language(owner, eager_tasks):
    from accounts.tasks import invite_email_deliver

    record = InviteEmail.objects.create(inviter=owner, email="later@example.com")
    invite_email_deliver.delay(record.pk, "http://testserver/invite/x", ZH)
    assert "邀请您体验" in _only_mail().subject
    # A task queued before languages were passed along: the inviter's saved one.
    owner.language = ZH
    owner.save(update_fields=["language"])
    invite_email_deliver.delay(record.pk, "http://testserver/invite/x")
    assert "邀请您体验" in _only_mail().subject
    invite_email_deliver.delay(record.pk, "http://testserver/invite/x", "xx")
    assert "邀请您体验" in _only_mail().subject


@pytest.mark.parametrize("language", ["en", ZH])
@pytest.mark.parametrize("threshold", [80, 100])
def test_threshold_emails_in_the_accounts_language(owner, language, threshold):
    owner.language = language
    owner.save(update_fields=["language"])
    tenant = tenant_start(user=owner)
    base = settings.QUOTA_MONTHLY_BYTES
    use(tenant, floor_hour(timezone.now()), base * threshold // 100)
    tenant_enforce(tenant_id=tenant.pk)  # on_commit not run: send it here
    notice = QuotaNotice.objects.get(tenant=tenant, threshold=threshold)
    # A task runs without a request, in whatever language the worker has active.
    with translation.override("en" if language == ZH else ZH):
        assert notice_send(notice_id=notice.pk) is True
    message = _only_mail(language)
    summary = month_summary(tenant=tenant)
    with translation.override(language):
        resets = formats.date_format(summary.resets_at, "DATE_FORMAT")
    assert resets in message.body
    if language == ZH:
        assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日", resets)
        subject = "已用完" if threshold == 100 else "80 %"
        assert subject in message.subject and CJK.search(message.subject)
        assert "邀请好友赚取奖励流量" in message.body
    else:
        assert not CJK.search(message.subject + message.body)
        assert ("used up" if threshold == 100 else "80 %") in message.subject
