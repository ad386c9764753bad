"""Grants, enforcement, threshold emails and the backstop, through the ledger's services."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from accelerator.models import Tenant
from quota.enforcement import tenant_enforce
from quota.errors import LedgerError
from quota.grants import grant_create
from quota.models import Grant, QuotaNotice
from quota.month import month_summary
from quota.periods import floor_hour, month_start
from quota.settlement import ledger_reconcile, usage_after_batch
from tests.quota.conftest import GB, at, use

pytestmark = pytest.mark.django_db


def now_month_hour():
    return floor_hour(timezone.now())


# --- grants -----------------------------------------------------------------------------------


def test_grant_is_idempotent_on_its_source_key(tenant):
    first = grant_create(tenant=tenant, kind="staff", bytes=GB, source_key="k1", note="a")
    again = grant_create(tenant=tenant, kind="promo", bytes=5 * GB, source_key="k1")
    assert again.pk == first.pk
    assert Grant.objects.count() == 1
    assert (again.kind, again.bytes, again.note) == ("staff", GB, "a")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bytes": 0}, "positive"),
        ({"bytes": -5}, "positive"),
        ({"bytes": True}, "positive"),
        ({"bytes": 1.5}, "positive"),
        ({"bytes": "100"}, "positive"),
        ({"bytes": 10**19}, "1 EB"),
        ({"kind": "gift"}, "unknown grant kind"),
        ({"source_key": ""}, "source key"),
        ({"source_key": "   "}, "source key"),
        ({"source_key": "x" * 201}, "source key"),
        ({"expires_at": at("2020-01-01 00:00")}, "future"),
    ],
)
def test_grant_refuses_wrong_values_and_changes_nothing(tenant, kwargs, message):
    args = {"tenant": tenant, "kind": "promo", "bytes": GB, "source_key": "k"} | kwargs
    with pytest.raises(LedgerError, match=message):
        grant_create(**args)
    assert Grant.objects.count() == 0


def test_grant_for_a_missing_tenant_is_refused(db):
    with pytest.raises(LedgerError, match="no such tenant"):
        grant_create(tenant=999_999, kind="promo", bytes=GB, source_key="k")


def test_grant_reopens_an_exhausted_tenant(tenant):
    use(tenant, now_month_hour(), 10 * GB)
    usage_after_batch(tenant_ids=[tenant.pk])
    tenant.refresh_from_db()
    assert tenant.exhausted_at is not None
    grant_create(tenant=tenant, kind="staff", bytes=GB, source_key="rescue")
    tenant.refresh_from_db()
    assert tenant.exhausted_at is None
    assert month_summary(tenant=tenant).remaining == GB


def test_a_grant_does_not_pay_for_earlier_overspending_but_reopens(tenant):
    use(tenant, "2026-03-02 10:00", 10 * GB + 500)
    tenant_enforce(tenant_id=tenant.pk, now=at("2026-03-02 11:00"))
    assert Tenant.objects.get(pk=tenant.pk).exhausted_at is not None
    grant_create(
        tenant=tenant, kind="staff", bytes=100, source_key="tiny", now=at("2026-03-02 12:30")
    )
    s = month_summary(tenant=tenant, now=at("2026-03-02 12:31"))
    assert (s.remaining, s.overspent) == (100, 500)
    assert Tenant.objects.get(pk=tenant.pk).exhausted_at is None


# --- enforcement ------------------------------------------------------------------------------


def test_usage_after_batch_marks_and_is_idempotent(tenant, other_tenant):
    use(tenant, now_month_hour(), 10 * GB)
    use(other_tenant, now_month_hour(), GB)
    usage_after_batch(tenant_ids=[tenant.pk, other_tenant.pk, tenant.pk])
    first = Tenant.objects.get(pk=tenant.pk).exhausted_at
    assert first is not None
    assert Tenant.objects.get(pk=other_tenant.pk).exhausted_at is None
    usage_after_batch(tenant_ids=[tenant.pk])
    assert Tenant.objects.get(pk=tenant.pk).exhausted_at == first  # keeps the first time


def test_enforcement_marks_low_before_exhausted_and_clears_it(tenant, settings):
    settings.GATE_LOW_REMAINING_PERCENT = 10
    base = settings.QUOTA_MONTHLY_BYTES
    use(tenant, now_month_hour(), base * 89 // 100)
    tenant_enforce(tenant_id=tenant.pk)
    assert Tenant.objects.get(pk=tenant.pk).low_at is None
    use(tenant, now_month_hour(), base // 100)  # 90 % used: 10 % left
    tenant_enforce(tenant_id=tenant.pk)
    row = Tenant.objects.get(pk=tenant.pk)
    assert row.low_at is not None and row.exhausted_at is None
    first = row.low_at
    use(tenant, now_month_hour(), base)
    tenant_enforce(tenant_id=tenant.pk)
    row = Tenant.objects.get(pk=tenant.pk)
    assert row.exhausted_at is not None and row.low_at == first  # keeps the first time
    # A grant large enough re-opens the tenant and ends the throttle.
    grant_create(tenant=tenant, kind="staff", bytes=5 * base, source_key="test:low")
    row = Tenant.objects.get(pk=tenant.pk)
    assert row.exhausted_at is None and row.low_at is None


def test_usage_after_batch_ignores_unknown_tenants(tenant):
    usage_after_batch(tenant_ids=[999_999])
    usage_after_batch(tenant_ids=[])
    assert tenant_enforce(tenant_id=999_999) is None


def test_reconcile_reopens_in_a_new_month_and_closes_on_expiry(tenant, other_tenant):
    use(tenant, "2026-03-20 10:00", 10 * GB)
    tenant_enforce(tenant_id=tenant.pk, now=at("2026-03-20 11:00"))
    assert Tenant.objects.get(pk=tenant.pk).exhausted_at is not None

    grant_create(
        tenant=other_tenant,
        kind="promo",
        bytes=GB,
        source_key="short",
        now=at("2026-03-01 00:00"),
        expires_at=at("2026-04-10 00:00"),
    )
    use(other_tenant, "2026-04-02 10:00", 10 * GB + 1)
    tenant_enforce(tenant_id=other_tenant.pk, now=at("2026-04-02 11:00"))
    assert Tenant.objects.get(pk=other_tenant.pk).exhausted_at is None

    result = ledger_reconcile(now=at("2026-04-05 00:00"))
    assert Tenant.objects.get(pk=tenant.pk).exhausted_at is None  # a new month
    assert result.evaluated == 2
    ledger_reconcile(now=at("2026-04-10 00:00"))
    assert Tenant.objects.get(pk=other_tenant.pk).exhausted_at is not None  # grant expired


def test_a_debt_of_a_whole_base_exhausts_from_the_months_first_hour(tenant):
    use(tenant, "2026-03-20 10:00", 21 * GB)  # 11 GB overspent in March
    tenant_enforce(tenant_id=tenant.pk, now=at("2026-03-20 11:00"))
    grant_create(
        tenant=tenant,
        kind="staff",
        bytes=GB,
        source_key="until-april",
        now=at("2026-03-25 00:00"),
        expires_at=at("2026-04-01 00:00"),
    )
    # The grant reopened the tenant; it uses nothing more in March, nothing in April.
    assert Tenant.objects.get(pk=tenant.pk).exhausted_at is None
    # Not exhausted and no usage this month: only the debt makes it a candidate.
    result = ledger_reconcile(now=at("2026-04-01 00:00"))
    assert result.evaluated == 1 and result.exhausted == 1
    assert Tenant.objects.get(pk=tenant.pk).exhausted_at is not None
    s = month_summary(tenant=tenant, now=at("2026-04-01 00:00"))
    assert (s.carried_in, s.used, s.remaining, s.exhausted) == (11 * GB, 0, 0, True)
    assert QuotaNotice.objects.filter(month=at("2026-04-01 00:00").date(), threshold=100).exists()


def test_tenant_enforce_at_the_month_boundary_sees_the_debt(tenant):
    use(tenant, "2026-03-31 22:00", 10 * GB + 5)  # the grant below covers 23:00 on
    grant_create(tenant=tenant, kind="staff", bytes=GB, source_key="g", now=at("2026-03-31 23:30"))
    assert tenant_enforce(tenant_id=tenant.pk, now=at("2026-03-31 23:59")).exhausted is False
    # April's base pays the 5 bytes; the grant is untouched.
    s = tenant_enforce(tenant_id=tenant.pk, now=at("2026-04-01 00:00"))
    assert (s.carried_in, s.remaining) == (5, 11 * GB - 5)
    use(tenant, "2026-04-01 00:00", 10 * GB)
    s = tenant_enforce(tenant_id=tenant.pk, now=at("2026-04-01 00:10"))
    assert (s.bonus_left, s.remaining, s.exhausted) == (GB - 5, GB - 5, False)


def test_reconcile_finds_a_debt_carried_through_a_month_without_usage(tenant):
    use(tenant, "2026-01-20 10:00", 35 * GB)  # 25 GB overspent in January
    tenant_enforce(tenant_id=tenant.pk, now=at("2026-01-20 11:00"))
    ledger_reconcile(now=at("2026-02-01 00:30"))  # still exhausted by the debt
    assert Tenant.objects.get(pk=tenant.pk).exhausted_at is not None
    # A grant reopens it in February; it pays later usage, not the debt February brought in.
    grant_create(tenant=tenant, kind="staff", bytes=GB, source_key="g", now=at("2026-02-10 00:00"))
    assert Tenant.objects.get(pk=tenant.pk).exhausted_at is None
    # March: 15 GB of debt, its base and the grant pay 11 GB: exhausted from the first hour.
    result = ledger_reconcile(now=at("2026-03-01 00:05"))
    assert result.evaluated == 1
    assert Tenant.objects.get(pk=tenant.pk).exhausted_at is not None
    s = month_summary(tenant=tenant, now=at("2026-03-01 00:05"))
    assert (s.carried_in, s.bonus_used, s.overspent, s.remaining) == (15 * GB, GB, 4 * GB, 0)


def test_reconcile_command_twin(tenant):
    use(tenant, now_month_hour(), 10 * GB)
    out = StringIO()
    call_command("ledger_reconcile", stdout=out)
    assert "evaluated 1 tenants, 1 exhausted" in out.getvalue()
    assert Tenant.objects.get(pk=tenant.pk).exhausted_at is not None


def test_rollup_rebuild_command(tenant):
    use(tenant, now_month_hour(), 5)
    out = StringIO()
    call_command("ledger_rollup_rebuild", "--tenant", str(tenant.pk), stdout=out)
    assert "1 monthly rollup rows written" in out.getvalue()
    assert month_summary(tenant=tenant).used == 5


# --- threshold emails -------------------------------------------------------------------------


def test_80_and_100_percent_emails_once_each(
    tenant, eager_tasks, django_capture_on_commit_callbacks
):
    hour = now_month_hour()
    with django_capture_on_commit_callbacks(execute=True):
        use(tenant, hour, 7 * GB)
        usage_after_batch(tenant_ids=[tenant.pk])
    assert mail.outbox == []
    with django_capture_on_commit_callbacks(execute=True):
        use(tenant, hour, GB)
        usage_after_batch(tenant_ids=[tenant.pk])
        usage_after_batch(tenant_ids=[tenant.pk])
    assert len(mail.outbox) == 1
    assert "80 %" in mail.outbox[0].subject
    assert mail.outbox[0].to == [tenant.user.email]
    assert "8 GB" in mail.outbox[0].body and "10 GB" in mail.outbox[0].body
    with django_capture_on_commit_callbacks(execute=True):
        use(tenant, hour, 2 * GB)
        usage_after_batch(tenant_ids=[tenant.pk])
        use(tenant, hour, GB)
        usage_after_batch(tenant_ids=[tenant.pk])
        ledger_reconcile()
    assert len(mail.outbox) == 2
    assert "used up" in mail.outbox[1].subject
    statuses = set(QuotaNotice.objects.values_list("threshold", "status"))
    assert statuses == {(80, "sent"), (100, "sent")}


def test_jumping_past_both_thresholds_sends_only_the_100_percent_email(
    tenant, eager_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        use(tenant, now_month_hour(), 11 * GB)
        usage_after_batch(tenant_ids=[tenant.pk])
    assert len(mail.outbox) == 1
    assert "used up" in mail.outbox[0].subject
    assert dict(QuotaNotice.objects.values_list("threshold", "status")) == {
        80: "skipped",
        100: "sent",
    }


def test_a_carried_debt_counts_toward_the_80_percent_email(
    tenant, eager_tasks, django_capture_on_commit_callbacks
):
    current = month_start(timezone.now())
    last_month = month_start(current - timedelta(hours=1))
    use(tenant, last_month + timedelta(hours=10), 19 * GB)  # 9 GB overspent last month
    tenant_enforce(tenant_id=tenant.pk, now=last_month + timedelta(hours=11))
    with django_capture_on_commit_callbacks(execute=True):
        ledger_reconcile()
    # This month starts with 9 GB of its 10 GB charged: reopened, and the 80 % email goes.
    assert Tenant.objects.get(pk=tenant.pk).exhausted_at is None
    notice = QuotaNotice.objects.get(month=current.date())
    assert (notice.threshold, notice.status) == (80, "sent")
    (body,) = [m.body for m in mail.outbox if "80 %" in m.subject]
    assert "You have used 9 GB of this month's 10 GB" in body
    assert "9 GB carried over from last month" in body


def test_thresholds_come_back_in_a_new_month(tenant):
    use(tenant, "2026-03-20 10:00", 10 * GB)
    use(tenant, "2026-04-20 10:00", 10 * GB)
    tenant_enforce(tenant_id=tenant.pk, now=at("2026-03-21 00:00"))
    tenant_enforce(tenant_id=tenant.pk, now=at("2026-04-21 00:00"))
    months = sorted(QuotaNotice.objects.filter(threshold=100).values_list("month", flat=True))
    assert [m.isoformat() for m in months] == ["2026-03-01", "2026-04-01"]


def test_a_notice_is_sent_once_even_when_the_task_runs_twice(tenant):
    from quota.notices import notice_send

    use(tenant, now_month_hour(), 10 * GB)
    tenant_enforce(tenant_id=tenant.pk)  # on_commit not run: the row waits
    notice = QuotaNotice.objects.get(threshold=100)
    assert notice_send(notice_id=notice.pk) is True
    assert notice_send(notice_id=notice.pk) is False
    assert notice_send(notice_id=999_999) is False
    assert len(mail.outbox) == 1


def test_a_failed_send_is_retried_later(tenant, settings):
    from quota.notices import NoticeSendFailed, notice_send

    use(tenant, now_month_hour(), 10 * GB)
    tenant_enforce(tenant_id=tenant.pk)
    notice = QuotaNotice.objects.get(threshold=100)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2
    with pytest.raises(NoticeSendFailed):
        notice_send(notice_id=notice.pk)
    notice.refresh_from_db()
    assert notice.status == "pending"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert notice_send(notice_id=notice.pk) is True
    assert len(mail.outbox) == 1


# --- enforcement of many tenants at once (a batch's settlement) -------------------------------


def _many_tenants(n: int, prefix: str) -> list[int]:
    from accelerator.labels import new_label
    from accounts.models import User

    users = User.objects.bulk_create(
        [User(email=f"{prefix}{i}@example.com", password="!") for i in range(n)]
    )
    tenants = Tenant.objects.bulk_create([Tenant(user=u, label=new_label()) for u in users])
    return [t.pk for t in tenants]


def _mixed_usage(ids: list[int], base: int, now) -> None:
    """Every case the month rule distinguishes, in turn: nothing used, 30 %, 85 % (the 80 %
    email), 92 % (low), 100 % (exhausted), a debt brought from last month, a debt and usage,
    a grant that re-opens, a grant that expired, and usage only last month."""
    this_hour = floor_hour(now)
    last_month = month_start(now) - timedelta(days=3)
    for i, tenant_id in enumerate(ids):
        case = i % 10
        if case == 1:
            use(tenant_id, this_hour, base * 30 // 100)
        elif case == 2:
            use(tenant_id, this_hour, base * 85 // 100)
        elif case == 3:
            use(tenant_id, this_hour, base * 92 // 100)
        elif case == 4:
            use(tenant_id, this_hour, base)
        elif case == 5:
            use(tenant_id, last_month, 2 * base + 7)
        elif case == 6:
            use(tenant_id, last_month, base + base // 2)
            use(tenant_id, this_hour, base // 3)
        elif case == 7:
            use(tenant_id, this_hour, base + 1)
            Grant.objects.create(tenant_id=tenant_id, kind="staff", bytes=base, source_key=f"g{i}")
        elif case == 8:
            Grant.objects.create(
                tenant_id=tenant_id,
                kind="promo",
                bytes=base,
                source_key=f"g{i}",
                created_at=now - timedelta(days=40),
                expires_at=now - timedelta(days=1),
            )
            use(tenant_id, this_hour, base)
        elif case == 9:
            use(tenant_id, last_month, base // 2)


def test_a_batch_of_tenants_is_enforced_as_each_alone_would_be(
    eager_tasks, django_capture_on_commit_callbacks, settings
):
    from accelerator.gate import is_low
    from quota.month import month_summaries

    base = settings.QUOTA_MONTHLY_BYTES
    ids = _many_tenants(40, "batch")
    now = timezone.now()
    _mixed_usage(ids, base, now)
    with django_capture_on_commit_callbacks(execute=True):
        usage_after_batch(tenant_ids=[*ids, 999_999])  # an unknown id changes nothing

    alone = {t: month_summary(tenant=t) for t in ids}
    assert month_summaries(tenant_ids=ids) == alone
    rows = dict(Tenant.objects.filter(pk__in=ids).values_list("pk", "exhausted_at"))
    lows = dict(Tenant.objects.filter(pk__in=ids).values_list("pk", "low_at"))
    for t, s in alone.items():
        assert (rows[t] is not None) == s.exhausted, (t, s)
        assert (lows[t] is not None) == is_low(remaining=s.remaining, allowance=s.allowance)
    assert sum(s.exhausted for s in alone.values()) >= 12  # the cases above do exhaust some
    # One email per tenant that reached a threshold: the highest one reached (80 % skipped
    # when 100 % came with it).
    want = set()
    for t, s in alone.items():
        warn = s.charged > 0 and s.charged * 5 >= s.allowance * 4
        if s.exhausted:
            want |= {(t, 100, "sent")} | ({(t, 80, "skipped")} if warn else set())
        elif warn:
            want.add((t, 80, "sent"))
    assert set(QuotaNotice.objects.values_list("tenant_id", "threshold", "status")) == want
    emails = sum(1 for _t, _th, status in want if status == "sent")
    assert len(mail.outbox) == emails
    assert {m.to[0] for m in mail.outbox} == set(
        Tenant.objects.filter(pk__in={t for t, _th, st in want if st == "sent"}).values_list(
            "user__email", flat=True
        )
    )

    # Again: nothing changes, no email goes twice, first times are kept.
    before = set(Tenant.objects.filter(pk__in=ids).values_list("pk", "exhausted_at", "low_at"))
    with django_capture_on_commit_callbacks(execute=True):
        usage_after_batch(tenant_ids=ids)
    after = set(Tenant.objects.filter(pk__in=ids).values_list("pk", "exhausted_at", "low_at"))
    assert after == before
    assert len(mail.outbox) == emails


def test_a_batch_settlement_costs_the_same_queries_for_10_or_100_tenants(settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    base = settings.QUOTA_MONTHLY_BYTES
    now = timezone.now()
    counts = []
    for n, prefix in ((10, "few"), (100, "many")):
        ids = _many_tenants(n, prefix)
        for tenant_id in ids:  # every one of them exhausted by this batch
            use(tenant_id, floor_hour(now), base)
        with CaptureQueriesContext(connection) as queries:
            usage_after_batch(tenant_ids=ids)
        counts.append(len(queries))
        assert Tenant.objects.filter(pk__in=ids, exhausted_at__isnull=False).count() == n
    assert counts[0] == counts[1], counts
    assert counts[1] < 20, counts
