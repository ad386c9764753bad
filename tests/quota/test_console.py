"""The console's quota card shows the ledger's numbers; SI units; the chart is server-rendered."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from quota.charts import chart_bars, nice_ceiling
from quota.grants import grant_create
from quota.month import month_summary
from quota.periods import floor_hour, month_start
from quota.templatetags.quota import si_bytes
from quota.units import format_bytes
from tests.quota.conftest import GB, use

pytestmark = pytest.mark.django_db


def test_console_shows_the_month_from_the_ledger(owner_client, tenant):
    now = timezone.now()
    use(tenant, floor_hour(now), 3_456_000_000)
    use(tenant, floor_hour(now - timedelta(days=2)), 1_000_000_000)
    grant_create(
        tenant=tenant, kind="staff", bytes=2 * GB, source_key="s1", note="sorry for the outage"
    )
    summary = month_summary(tenant=tenant)
    html = owner_client.get(reverse("console")).content.decode()
    assert f'data-testid="quota-used" data-bytes="{summary.used}"' in html
    assert f'data-bytes="{summary.remaining}"' in html
    assert ">10 GB<" in html  # the base
    assert ">2 GB<" in html  # bonus left
    assert summary.resets_at.strftime("%Y-%m-%d") in html
    assert "sorry for the outage" in html and "staff grant" in html
    chart = re.search(r'<svg class="usage-chart".*?</svg>', html, re.S).group(0)
    assert chart.count("<rect") == 30
    assert f"{now:%Y-%m-%d}: 3.46 GB" in chart
    assert "http" not in chart.replace("http://www.w3.org", "")  # nothing from a CDN


def test_console_without_an_accelerator_shows_no_quota(owner_client):
    html = owner_client.get(reverse("console")).content.decode()
    assert 'data-testid="quota"' not in html


def test_console_shows_exhaustion(owner_client, tenant):
    use(tenant, floor_hour(timezone.now()), 10 * GB)
    html = owner_client.get(reverse("console")).content.decode()
    assert 'data-testid="quota-exhausted"' in html
    assert 'aria-valuenow="100"' in html


def test_a_stranger_sees_only_their_own_numbers(client, stranger, tenant):
    use(tenant, floor_hour(timezone.now()), 7 * GB)
    from accelerator.services import tenant_start

    tenant_start(user=stranger)
    client.force_login(stranger)
    html = client.get(reverse("console")).content.decode()
    assert 'data-testid="quota-used" data-bytes="0"' in html


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1 kB"),
        (1_500_000, "1.5 MB"),
        (10**9, "1 GB"),
        (10 * 10**9, "10 GB"),
        (12_345_678_901, "12.3 GB"),
        (999_999_999, "1 GB"),
        (2 * 10**12, "2 TB"),
        (-2 * 10**9, "-2 GB"),
    ],
)
def test_sizes_are_si(value, text):
    assert format_bytes(value) == text
    assert si_bytes(value) == text


def test_si_filter_tolerates_junk():
    assert si_bytes(None) == "" and si_bytes("abc") == ""


def test_chart_scale_is_round_and_bars_fit():
    assert [nice_ceiling(n) for n in (0, 1, 3, 10, 11, 4_000_000_001)] == [
        1,
        1,
        5,
        10,
        20,
        5_000_000_000,
    ]
    days = [(timezone.now().date().isoformat(), b) for b in (0, 1, 7 * GB)]
    bars, top = chart_bars(days)
    assert top == 10 * GB
    assert [b.height for b in bars][0] == 0 and bars[1].height == 1  # tiny days stay visible
    assert all(0 <= b.y <= 140 and b.y + b.height <= 140 for b in bars)


def test_console_explains_overspent_bytes(owner_client, tenant):
    use(tenant, floor_hour(timezone.now()), 10 * GB + 300_000_000)
    html = owner_client.get(reverse("console")).content.decode()
    assert 'data-testid="quota-overspent"' in html and "300 MB could not be paid" in html
    assert "100 % of this month" in html


def test_console_shows_the_debt_carried_over_from_last_month(owner_client, tenant):
    last_month = month_start(month_start(timezone.now()) - timedelta(hours=1))
    use(tenant, last_month, 10 * GB + 1_500_000_000)
    html = owner_client.get(reverse("console"), headers={"Accept-Language": "en"}).content.decode()
    assert 'data-testid="quota-carried" data-bytes="1500000000"' in html
    assert "Carried over from last month" in html and ">1.5 GB<" in html
    assert f'data-testid="quota-remaining" data-bytes="{8_500_000_000}"' in html
    zh = owner_client.get(reverse("console"), headers={"Accept-Language": "zh-CN"}).content.decode()
    assert "上月结转" in zh and "超出当月额度的流量将从下个月扣除" in zh


def test_console_shows_no_debt_line_without_a_debt(owner_client, tenant):
    html = owner_client.get(reverse("console")).content.decode()
    assert 'data-testid="quota-carried"' not in html
