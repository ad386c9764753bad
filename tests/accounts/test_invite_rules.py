"""Issue 13, part 3: the invite credit holds against a tenant who tries to beat it.

One mailbox, one account (aliases refused at sign-up, in the database too); no credit for
throwaway domains; real use (bytes and age) before a credit; risk signals hold a credit for
staff; invite emails answer the same for every address and every attempt counts.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accelerator.models import Tenant
from accelerator.services import tenant_start
from accounts import services
from accounts.addresses import email_canonical, email_domain_blocked
from accounts.models import Invite, InviteEmail, User
from api.services import token_create
from dashboard.models import StaffAction
from quota.invites import invite_credit
from quota.models import Grant
from quota.periods import floor_hour
from quota.settlement import ledger_reconcile, usage_after_batch
from quota.units import GB
from tests.conftest import PASSWORD
from tests.quota.conftest import use

pytestmark = pytest.mark.django_db

MB = 10**6


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def signup(client: Client, email: str, ip: str = "127.0.0.1"):
    return client.post(
        reverse("account_signup"),
        {"email": email, "password1": PASSWORD, "password2": PASSWORD},
        REMOTE_ADDR=ip,
    )


def bonuses(user):
    return sorted(Grant.objects.filter(tenant__user=user).values_list("kind", "bytes"))


# --- one mailbox, one account ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "canonical"),
    [
        ("Me+1@Gmail.com", "me@gmail.com"),
        ("m.e+2@gmail.com", "me@gmail.com"),
        ("M.E@googlemail.com", "me@gmail.com"),
        ("a.b+tag@example.com", "a.b@example.com"),  # dots kept where they may matter
        ("x@me.com", "x@icloud.com"),
    ],
)
def test_the_canonical_address_works_offline(email, canonical):
    assert email_canonical(email) == canonical


@pytest.mark.parametrize(
    "alias", ["me+1@gmail.com", "m.e+2@gmail.com", "M.E@googlemail.com", "ME@GMAIL.COM"]
)
def test_an_alias_of_an_existing_mailbox_creates_no_account_and_mails_the_owner(client, alias):
    assert signup(client, "me@gmail.com").status_code == 302
    EmailAddress.objects.update(verified=True)
    cache.clear()  # allauth throttles mails to one address; the sign-up just sent one
    mail.outbox.clear()
    response = signup(Client(), alias)
    assert response.status_code == 302  # the same answer as for a new address
    assert User.objects.count() == 1
    (message,) = mail.outbox
    assert message.to == ["me@gmail.com"]
    assert "already" in message.body


def test_dots_at_a_provider_that_keeps_them_are_another_mailbox(client):
    signup(client, "a.b@example.com")
    assert signup(Client(), "ab@example.com").status_code == 302
    assert sorted(User.objects.values_list("email_canonical", flat=True)) == [
        "a.b@example.com",
        "ab@example.com",
    ]


def test_the_database_refuses_a_second_account_for_one_mailbox(owner):
    User.objects.create_user(email="me@gmail.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user(email="m.e+x@googlemail.com")


def test_adding_an_alias_of_another_accounts_mailbox_adds_nothing(client, owner):
    other = User.objects.create_user(email="me@gmail.com", password=PASSWORD)
    EmailAddress.objects.create(user=other, email=other.email, verified=True, primary=True)
    client.force_login(owner)
    response = client.post(reverse("account_email"), {"action_add": "", "email": "m.e@gmail.com"})
    assert response.status_code == 302
    assert not EmailAddress.objects.filter(email__iexact="m.e@gmail.com").exists()
    assert [m.to for m in mail.outbox] == [["me@gmail.com"]]


# --- real use ---------------------------------------------------------------------------------


def _invited(client: Client, inviter, email: str, ip: str):
    code = services.invite_code_get(user=inviter)
    client.get(f"/invite/{code}")
    assert signup(client, email, ip=ip).status_code == 302
    user = User.objects.get(email=email)
    EmailAddress.objects.filter(user=user).update(verified=True)
    return user


def _pull(user, nbytes: int) -> Tenant:
    tenant = tenant_start(user=user)
    use(tenant, floor_hour(timezone.now()), nbytes)
    usage_after_batch(tenant_ids=[tenant.pk])
    return tenant


def test_a_ping_is_not_use_a_real_pull_after_a_day_is(client, owner):
    friend = _invited(client, owner, "friend@example.com", "198.51.100.7")
    _pull(friend, 2)  # a /v2/ ping
    assert bonuses(owner) == []
    _pull(friend, 100 * MB)
    assert bonuses(owner) == []  # used enough, but the account is new
    later = timezone.now() + timedelta(hours=24, seconds=1)
    assert invite_credit(invitee_id=friend.pk, now=later) is True
    assert bonuses(owner) == [("invite", 2 * GB)]
    assert bonuses(friend) == [("welcome", GB)]


def test_the_reconcile_credits_an_invite_due_by_age_alone(client, owner):
    friend = _invited(client, owner, "friend@example.com", "198.51.100.7")
    _pull(friend, 100 * MB)
    assert ledger_reconcile().invites_credited == 0
    later = timezone.now() + timedelta(days=1, minutes=1)
    assert ledger_reconcile(now=later).invites_credited == 1
    assert ledger_reconcile(now=later).invites_credited == 0
    assert Invite.objects.get().status == "credited"


def test_a_disposable_domain_earns_nothing(client, owner, settings):
    settings.INVITE_BLOCKED_DOMAINS = ["throwaway.test"]
    assert email_domain_blocked("x@mailinator.com") and email_domain_blocked("x@a.throwaway.test")
    for n, email in enumerate(["f@mailinator.com", "g@throwaway.test"]):
        friend = _invited(Client(), owner, email, f"198.51.10{n}.7")
        _pull(friend, 100 * MB)
    later = timezone.now() + timedelta(days=2)
    assert ledger_reconcile(now=later).invites_credited == 0
    assert set(Invite.objects.values_list("status", "reason")) == {("void", "disposable_domain")}
    assert not Grant.objects.exists()
    assert User.objects.filter(email="f@mailinator.com").exists()  # sign-up itself works


# --- risk signals -----------------------------------------------------------------------------


def _with_signup_ip(user, ip: str):
    user.signup_ip = ip
    user.save(update_fields=["signup_ip"])
    return user


@pytest.mark.parametrize(
    ("inviter_ip", "invitee_ip", "reason"),
    [
        ("203.0.113.5", "203.0.113.5", "same_ip"),
        ("203.0.113.5", "203.0.113.99", "same_network"),
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "same_network"),
        ("203.0.113.5", "198.51.100.7", ""),
        ("2001:db8:1:2::1", "2001:db8:1:3::1", ""),
    ],
)
def test_the_inviters_ip_or_network_holds_the_credit(owner, inviter_ip, invitee_ip, reason):
    _with_signup_ip(owner, inviter_ip)
    friend = _invited(Client(), owner, "friend@example.com", invitee_ip)
    assert friend.signup_ip == invitee_ip
    _pull(friend, 100 * MB)
    invite_credit(invitee_id=friend.pk, now=timezone.now() + timedelta(days=2))
    invite = Invite.objects.get()
    assert (invite.status, invite.reason) == (("held", reason) if reason else ("credited", ""))


def test_a_burst_of_invitees_within_an_hour_is_held(owner, settings):
    settings.INVITE_HOLD_BURST = 3
    friends = [_invited(Client(), owner, f"f{i}@example.com", f"198.51.{i}.7") for i in range(4)]
    for friend in friends:
        _pull(friend, 100 * MB)
    later = timezone.now() + timedelta(days=2)
    ledger_reconcile(now=later)
    assert set(Invite.objects.values_list("status", "reason")) == {("held", "burst")}
    assert not Grant.objects.exists()


@pytest.fixture
def held(owner):
    _with_signup_ip(owner, "203.0.113.5")
    friend = _invited(Client(), owner, "friend@example.com", "203.0.113.5")
    _pull(friend, 100 * MB)
    invite_credit(invitee_id=friend.pk, now=timezone.now() + timedelta(days=2))
    invite = Invite.objects.get()
    assert invite.status == "held"
    return invite


def test_the_dashboard_lists_held_credits_and_approval_pays_once(client, staff, owner, held):
    client.force_login(staff)
    assert "1" in client.get("/staff/").content.decode()
    page = client.get("/staff/invites/").content.decode()
    assert 'data-testid="held-invites"' in page and "friend@example.com" in page
    assert "same sign-up IP as the inviter" in page
    url = f"/staff/invites/{held.pk}/approve/"
    assert client.post(url, {"reason": "known family"}).status_code == 302
    assert client.post(url, {"reason": "known family"}).status_code == 302
    assert bonuses(owner) == [("invite", 2 * GB)]
    assert bonuses(held.invitee) == [("welcome", GB)]
    action = StaffAction.objects.get()
    assert (action.kind, action.actor, action.reason) == ("invite_approve", staff, "known family")
    assert action.detail["invite"] == held.pk
    assert "friend@example.com" not in client.get("/staff/invites/").content.decode()


def test_rejection_pays_nothing_and_is_audited(client, staff, owner, held):
    client.force_login(staff)
    assert client.post(f"/staff/invites/{held.pk}/reject/", {"reason": ""}).status_code == 400
    assert client.post(f"/staff/invites/{held.pk}/reject/", {"reason": "farm"}).status_code == 302
    held.refresh_from_db()
    assert held.status == "rejected"
    client.post(f"/staff/invites/{held.pk}/approve/", {"reason": "changed my mind"})
    assert not Grant.objects.exists()
    assert list(StaffAction.objects.values_list("kind", flat=True)) == ["invite_reject"]
    ledger_reconcile(now=timezone.now() + timedelta(days=3))
    assert not Grant.objects.exists()


def test_non_staff_cannot_see_or_decide_held_credits(client, owner, held):
    for who in (None, owner):
        if who:
            client.force_login(who)
        assert client.get("/staff/invites/").status_code == 404
        url = f"/staff/invites/{held.pk}/approve/"
        assert client.post(url, {"reason": "x"}).status_code == 404
    assert not Grant.objects.exists()


def _api(user):
    secret = token_create(
        scopes=("read", "write", "staff") if user.is_staff else ("read", "write"),
        user=user,
        name="t",
        expires_at=timezone.now() + timedelta(days=1),
    ).secret
    client = Client()
    return lambda method, url, body=None: getattr(client, method)(
        url, body or {}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )


def test_the_staff_api_lists_approves_once_and_rejects(staff, owner, held):
    call = _api(staff)
    listed = call("get", "/api/v1/staff/invites/held/").json()["results"]
    assert [(i["id"], i["reason"]) for i in listed] == [(held.pk, "same_ip")]
    url = f"/api/v1/staff/invites/{held.pk}/approve/"
    first = call("post", url, {"reason": "ok"})
    assert first.status_code == 201, first.content
    assert call("post", url, {"reason": "ok"}).json()["id"] == first.json()["id"]
    assert bonuses(owner) == [("invite", 2 * GB)]
    refused = call("post", f"/api/v1/staff/invites/{held.pk}/reject/", {"reason": "late"})
    assert refused.status_code == 400
    assert call("post", url, {}).status_code in (201, 400)
    assert Grant.objects.filter(kind="invite").count() == 1


def test_the_staff_api_reject_and_non_staff(staff, owner, held):
    for caller in (_api(owner),):
        for url in ("held/", f"{held.pk}/approve/", f"{held.pk}/reject/"):
            method = "get" if url == "held/" else "post"
            resp = caller(method, f"/api/v1/staff/invites/{url}", {"reason": "x"})
            assert resp.status_code == 404
    resp = _api(staff)("post", f"/api/v1/staff/invites/{held.pk}/reject/", {"reason": "farm"})
    assert resp.status_code == 201 and resp.json()["kind"] == "invite_reject"
    assert not Grant.objects.exists()


# --- invite emails ----------------------------------------------------------------------------


@pytest.mark.parametrize("existing", ["stranger@example.com", "Stranger+x@example.com"])
def test_an_invite_to_an_existing_address_answers_as_a_new_one_and_counts(
    owner_client, stranger, eager_tasks, django_capture_on_commit_callbacks, existing
):
    pages = []
    with django_capture_on_commit_callbacks(execute=True):
        for email in ("new@example.com", existing):
            response = owner_client.post(reverse("invites"), {"email": email}, follow=True)
            assert response.redirect_chain[-1][0] == reverse("invites")
            pages.append(response.content.decode())
    assert f"Invite sent to {existing.lower()}" in pages[1]
    assert "2 of 20 invite emails sent" in pages[1]
    assert [m.to for m in mail.outbox] == [["new@example.com"]]
    outcomes = sorted(InviteEmail.objects.values_list("outcome", flat=True))
    assert outcomes == ["has_account", "sent"]


def test_refused_attempts_count_against_the_daily_limit(owner, settings):
    settings.INVITE_EMAILS_PER_DAY = 2
    with pytest.raises(services.InviteRefused):
        services.invite_email_send(inviter=owner, email="owner@example.com", link="L")
    services.invite_email_send(inviter=owner, email="a@example.com", link="L")
    with pytest.raises(services.InviteRefused) as refused:
        services.invite_email_send(inviter=owner, email="b@example.com", link="L")
    assert refused.value.reason == "rate_limited"


def test_two_sign_ups_for_one_mailbox_at_once_answer_alike_without_an_error(client, monkeypatch):
    from accounts import forms

    User.objects.create_user(email="me@gmail.com", password=PASSWORD)
    # The race: the other sign-up's account did not exist yet when this form was checked.
    real, calls = forms.user_for_mailbox, []

    def raced(*, email):
        calls.append(email)
        return None if len(calls) == 1 else real(email=email)

    monkeypatch.setattr(forms, "user_for_mailbox", raced)
    mail.outbox.clear()
    response = signup(client, "m.e+x@gmail.com")
    assert response.status_code == 302  # as for any address, no error page
    assert User.objects.count() == 1
    assert [m.to for m in mail.outbox] == [["me@gmail.com"]]


def test_staff_adding_an_alias_of_an_existing_mailbox_get_a_message_not_an_error(client):
    boss = User.objects.create_superuser(email="boss@example.com", password=PASSWORD)
    User.objects.create_user(email="me@gmail.com")
    client.force_login(boss)
    response = client.post(
        reverse("admin:accounts_user_add"),
        {"email": "M.E+z@googlemail.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 200
    assert "Another account already uses this mailbox" in response.content.decode()
    assert User.objects.count() == 2


@pytest.mark.parametrize(
    ("proxies", "forwarded", "recorded"),
    [
        # Behind one proxy (the console's nginx): the entry it appended, not the client's words.
        (1, "10.0.0.1, 198.51.100.7", "198.51.100.7"),
        (1, "2001:db8::1", "2001:db8::1"),
        # Two proxies: the entry the outer one appended.
        (2, "10.0.0.1, 198.51.100.7, 192.0.2.5", "198.51.100.7"),
        # No proxy trusted: a client's own X-Forwarded-For counts for nothing.
        (0, "198.51.100.7", "127.0.0.1"),
    ],
)
def test_the_sign_up_ip_is_the_client_address_the_trusted_proxies_saw(
    client, settings, proxies, forwarded, recorded
):
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = proxies
    client.post(
        reverse("account_signup"),
        {"email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD},
        REMOTE_ADDR="127.0.0.1",
        HTTP_X_FORWARDED_FOR=forwarded,
    )
    assert User.objects.get(email="new@example.com").signup_ip == recorded


@pytest.mark.parametrize("forwarded", ["not-an-address", "", " , ", "1.2.3.4, <script>"])
def test_a_hostile_forwarded_address_creates_no_account_and_no_500(client, settings, forwarded):
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1
    response = client.post(
        reverse("account_signup"),
        {"email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD},
        REMOTE_ADDR="127.0.0.1",
        HTTP_X_FORWARDED_FOR=forwarded,
    )
    if forwarded == "":
        # An empty header is no header: REMOTE_ADDR, an account as usual.
        assert User.objects.get(email="new@example.com").signup_ip == "127.0.0.1"
    else:
        assert response.status_code == 403
        assert not User.objects.filter(email="new@example.com").exists()
