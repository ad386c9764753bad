"""The invite credit: exactly once, when verified and after usage. The real-use thresholds
(INVITE_MIN_USAGE_BYTES, INVITE_MIN_AGE_SECONDS) are tested in test_invite_rules.py; here they
are lowered to "any bytes, any age", and the burst hold is out of reach."""

from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress
from django.utils import timezone

from accelerator.models import Tenant
from accelerator.services import tenant_start
from accounts import services
from accounts.models import Invite, User
from quota.enforcement import tenant_enforce
from quota.invites import invite_credit, invites_credit_pending
from quota.models import Grant
from quota.month import month_summary
from quota.periods import floor_hour
from quota.settlement import ledger_reconcile, usage_after_batch
from tests.conftest import PASSWORD
from tests.quota.conftest import GB, in_processes, use

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _any_use_counts(settings):
    settings.INVITE_MIN_USAGE_BYTES = 1
    settings.INVITE_MIN_AGE_SECONDS = 0
    settings.INVITE_HOLD_BURST = 100


def invitee_of(inviter, email, *, verified=True, start=True):
    user = User.objects.create_user(email=email, password=PASSWORD)
    EmailAddress.objects.create(user=user, email=email, verified=verified, primary=True)
    services.invite_accept(invitee=user, code=services.invite_code_get(user=inviter))
    if start:
        tenant_start(user=user)
    return user


def first_pull(user, nbytes=50_000_000):
    tenant = Tenant.objects.get(user=user)
    use(tenant, floor_hour(timezone.now()), nbytes)
    return tenant


def bonuses(user):
    return sorted(Grant.objects.filter(tenant__user=user).values_list("kind", "bytes"))


def test_credit_after_verified_first_usage_once(owner):
    friend = invitee_of(owner, "friend@example.com")
    assert invite_credit(invitee_id=friend.pk) is False  # no usage yet
    tenant = first_pull(friend)
    usage_after_batch(tenant_ids=[tenant.pk])
    usage_after_batch(tenant_ids=[tenant.pk])
    assert invite_credit(invitee_id=friend.pk) is False
    assert bonuses(friend) == [("welcome", 1 * GB)]
    assert bonuses(owner) == [("invite", 2 * GB)]
    invite = Invite.objects.get()
    assert invite.credited_at is not None
    assert (invite.inviter_bytes, invite.invitee_bytes) == (2 * GB, 1 * GB)
    assert month_summary(tenant=tenant).bonus_left == 1 * GB
    # The inviter had no accelerator: one was started to hold the bonus.
    assert month_summary(tenant=Tenant.objects.get(user=owner)).remaining == 12 * GB


def test_no_credit_without_verification_then_credit_on_confirmation(owner):
    friend = invitee_of(owner, "friend@example.com", verified=False)
    first_pull(friend)
    usage_after_batch(tenant_ids=[friend.tenant.pk])
    assert bonuses(friend) == [] and bonuses(owner) == []
    address = EmailAddress.objects.get(user=friend)
    address.verified = True
    address.save()
    from allauth.account.signals import email_confirmed

    email_confirmed.send(sender=EmailAddress, request=None, email_address=address)
    assert bonuses(friend) == [("welcome", GB)]


def test_no_credit_for_a_bucket_without_bytes(owner):
    friend = invitee_of(owner, "friend@example.com")
    first_pull(friend, nbytes=0)
    usage_after_batch(tenant_ids=[friend.tenant.pk])
    assert invites_credit_pending() == 0
    assert Invite.objects.get().credited_at is None


def test_no_credit_without_an_invite_or_a_tenant(owner, stranger):
    assert invite_credit(invitee_id=stranger.pk) is False
    friend = invitee_of(owner, "friend@example.com", start=False)
    assert invite_credit(invitee_id=friend.pk) is False
    assert not Grant.objects.exists()


def test_the_backstop_credits_a_missed_first_usage(owner):
    friend = invitee_of(owner, "friend@example.com")
    first_pull(friend)  # ingestion died before usage_after_batch
    result = ledger_reconcile()
    assert result.invites_credited == 1
    assert ledger_reconcile().invites_credited == 0
    assert bonuses(owner) == [("invite", 2 * GB)]


def test_the_cap_stops_the_inviter_bonus_not_the_welcome(owner, settings):
    settings.INVITE_CAP = 2
    friends = [invitee_of(owner, f"f{i}@example.com") for i in range(3)]
    for friend in friends:
        first_pull(friend)
        usage_after_batch(tenant_ids=[friend.tenant.pk])
    assert bonuses(owner) == [("invite", 2 * GB)] * 2
    assert all(bonuses(f) == [("welcome", GB)] for f in friends)
    assert sorted(Invite.objects.values_list("inviter_bytes", flat=True)) == [0, 2 * GB, 2 * GB]


def test_a_suspended_inviter_gets_nothing_the_invitee_still_does(owner):
    from accelerator.services import tenant_suspend

    friend = invitee_of(owner, "friend@example.com")
    tenant_suspend(tenant=tenant_start(user=owner), reason="abuse")
    first_pull(friend)
    usage_after_batch(tenant_ids=[friend.tenant.pk])
    assert bonuses(owner) == []
    assert bonuses(friend) == [("welcome", GB)]
    assert Invite.objects.get().inviter_bytes == 0


def test_a_deleted_inviter_still_leaves_the_welcome_bonus(owner):
    friend = invitee_of(owner, "friend@example.com")
    owner.delete()
    first_pull(friend)
    usage_after_batch(tenant_ids=[friend.tenant.pk])
    assert bonuses(friend) == [("welcome", GB)]
    assert Invite.objects.get().inviter_id is None


def test_the_credit_reopens_an_exhausted_invitee(owner):
    friend = invitee_of(owner, "friend@example.com")
    tenant = first_pull(friend, nbytes=10 * GB)
    tenant_enforce(tenant_id=tenant.pk)
    usage_after_batch(tenant_ids=[tenant.pk])
    tenant.refresh_from_db()
    assert tenant.exhausted_at is None
    assert month_summary(tenant=tenant).remaining == GB


def test_the_invites_page_shows_the_credit(client, owner):
    friend = invitee_of(owner, "friend@example.com")
    first_pull(friend)
    usage_after_batch(tenant_ids=[friend.tenant.pk])
    client.force_login(owner)
    html = client.get("/invites/").content.decode()
    assert "1 signed up, 1 of at most 50 credited, 2 GB earned" in html


# --- two workers at once ----------------------------------------------------------------------


def _credit(invitee_ids):
    return sum(invite_credit(invitee_id=i) for i in invitee_ids)


def _after_batch(tenant_ids):
    usage_after_batch(tenant_ids=tenant_ids)
    return 0


@pytest.mark.django_db(transaction=True)
def test_two_workers_credit_once(owner):
    friend = invitee_of(owner, "friend@example.com")
    tenant = first_pull(friend)
    results = in_processes(_credit, [([friend.pk],), ([friend.pk],)])
    assert sorted(results) == [0, 1]
    in_processes(_after_batch, [([tenant.pk],), ([tenant.pk],)])
    assert bonuses(friend) == [("welcome", GB)]
    assert bonuses(owner) == [("invite", 2 * GB)]


@pytest.mark.django_db(transaction=True)
def test_the_cap_holds_under_concurrent_credits(owner, settings):
    settings.INVITE_CAP = 3
    friends = [invitee_of(owner, f"f{i}@example.com") for i in range(6)]
    for friend in friends:
        first_pull(friend)
    ids = [f.pk for f in friends]
    results = in_processes(_credit, [(ids,), (ids[::-1],)])
    assert sum(results) == 6
    assert bonuses(owner) == [("invite", 2 * GB)] * 3
    assert Grant.objects.filter(kind="welcome").count() == 6
