"""The console: start, show, copy and rotate an accelerator; strangers and suspended tenants."""

from __future__ import annotations

import html
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.urls import reverse

from accelerator import services
from accelerator.gate import GateState, gate_table
from accelerator.labels import is_valid_label
from accelerator.models import RetiredLabel, Tenant

pytestmark = pytest.mark.django_db

TOO_MANY = "You can rotate your address 5 times in 24 hours"


def test_console_offers_start_before_there_is_a_tenant(owner_client):
    body = owner_client.get(reverse("console")).content.decode()
    assert "Start your accelerator" in body
    assert 'data-testid="mirror-url"' not in body


def test_start_issues_a_label_once(owner_client, owner):
    assert owner_client.post(reverse("accelerator_start")).status_code == 302
    tenant = Tenant.objects.get(user=owner)
    assert is_valid_label(tenant.label) and tenant.state == Tenant.State.ACTIVE
    # A second click shows the same URL.
    owner_client.post(reverse("accelerator_start"))
    assert Tenant.objects.filter(user=owner).count() == 1
    assert Tenant.objects.get(user=owner).label == tenant.label
    body = owner_client.get(reverse("console")).content.decode()
    assert f"http://{tenant.label}.m.localhost:8480" in body


def test_start_only_by_post(owner_client, owner):
    assert owner_client.get(reverse("accelerator_start")).status_code == 405
    assert not Tenant.objects.filter(user=owner).exists()


def test_console_shows_configuration_for_every_client(owner_client, owner):
    tenant = services.tenant_start(user=owner)
    url = f"http://{tenant.label}.m.localhost:8480"
    body = html.unescape(owner_client.get(reverse("console")).content.decode())
    for expected in [
        '"registry-mirrors": ["%s"]' % url,
        f'DOCKER_OPTS="--registry-mirror={url}"',
        f'EXTRA_ARGS="--registry-mirror={url}"',
        f'[host."{url}"]',
        f'location = "{tenant.label}.m.localhost:8480"',
        "/etc/docker/daemon.json",
        "/etc/default/docker",
        "/var/lib/boot2docker/profile",
        "/etc/containerd/certs.d/_default/hosts.toml",
        'config_path = "/etc/containerd/certs.d"',
        "/etc/containers/registries.conf.d/50-accelerator.conf",
        "/etc/rancher/k3s/registries.yaml",
        "systemctl restart docker",
    ]:
        assert expected in body, expected


@override_settings(MIRROR_DOMAIN="m.example.io", MIRROR_SCHEME="https", MIRROR_PORT=443)
def test_mirror_url_follows_settings(owner_client, owner):
    tenant = services.tenant_start(user=owner)
    body = owner_client.get(reverse("console")).content.decode()
    assert f"https://{tenant.label}.m.example.io<" in body
    assert "insecure = true" not in body


def test_rotate_issues_a_new_label_and_retires_the_old(owner_client, owner):
    old = services.tenant_start(user=owner).label
    response = owner_client.post(reverse("accelerator_rotate"), follow=True)
    new = Tenant.objects.get(user=owner).label
    assert new != old and is_valid_label(new)
    assert RetiredLabel.objects.filter(label=old, tenant__user=owner).exists()
    assert "Your old address stops working within 12 seconds" in response.content.decode()
    table = gate_table()
    assert old not in table and table[new] == GateState.ACTIVE


def test_rotate_without_a_tenant_changes_nothing(owner_client, owner):
    response = owner_client.post(reverse("accelerator_rotate"), follow=True)
    assert "Start your accelerator first" in response.content.decode()
    assert not Tenant.objects.exists()


def test_retired_labels_are_never_reissued(owner, monkeypatch):
    tenant = services.tenant_start(user=owner)
    old = tenant.label
    labels = iter([old, "bbbbbbbbbbbb"])
    monkeypatch.setattr("accelerator.services.new_label", lambda: next(labels))
    services.tenant_rotate(tenant=tenant)
    # The generator offered the retired label first; it was skipped.
    assert Tenant.objects.get(pk=tenant.pk).label == "bbbbbbbbbbbb"


def test_a_stranger_cannot_see_or_touch_another_tenant(client, owner, stranger):
    tenant = services.tenant_start(user=owner)
    client.force_login(stranger)
    body = client.get(reverse("console")).content.decode()
    assert tenant.label not in body
    client.post(reverse("accelerator_rotate"))
    assert Tenant.objects.get(pk=tenant.pk).label == tenant.label
    # Starting gives the stranger a tenant of their own, never the owner's.
    client.post(reverse("accelerator_start"))
    assert Tenant.objects.get(user=stranger).label != tenant.label
    assert client.get(f"/admin/accelerator/tenant/{tenant.pk}/change/").status_code == 302


def test_suspended_tenant_is_shown_with_its_reason(owner_client, owner):
    tenant = services.tenant_start(user=owner)
    services.tenant_suspend(tenant=tenant, reason="Abuse: 3 TB in one hour")
    body = owner_client.get(reverse("console")).content.decode()
    assert "Your accelerator is suspended." in body
    assert "Abuse: 3 TB in one hour" in body
    assert gate_table()[tenant.label] == GateState.SUSPENDED
    services.tenant_resume(tenant=tenant)
    assert "suspended" not in owner_client.get(reverse("console")).content.decode().lower()


def test_landing_page_says_what_the_service_does(client):
    body = client.get(reverse("landing")).content.decode()
    assert "Docker Hub mirror" in body and reverse("account_signup") in body


def _age_rotations(tenant: Tenant, by: timedelta) -> None:
    """Move the tenant's rotations back in time (never wait)."""
    for row in RetiredLabel.objects.filter(tenant=tenant):
        row.retired_at -= by
        row.save(update_fields=["retired_at"])


@override_settings(EDGE_GATE_SYNC_SECONDS=2)
def test_console_says_how_long_the_old_address_answers_and_that_it_is_charged(owner_client, owner):
    services.tenant_start(user=owner)
    body = html.unescape(owner_client.get(reverse("console")).content.decode())
    assert (
        "Your old address stops working within 12 seconds; what it serves until then is "
        "charged to you." in body
    )
    zh = owner_client.get(reverse("console"), headers={"accept-language": "zh-CN"})
    assert "旧地址将在 12 秒内失效" in html.unescape(zh.content.decode())
    done = owner_client.post(
        reverse("accelerator_rotate"), follow=True, headers={"accept-language": "zh-CN"}
    )
    assert "旧地址将在 12 秒内失效；在此之前经旧地址产生的流量仍计入您的用量" in (
        done.content.decode()
    )


def test_the_sixth_rotation_in_a_day_is_refused_until_24_hours_have_passed(owner_client, owner):
    tenant = services.tenant_start(user=owner)
    for _ in range(5):
        assert (
            TOO_MANY
            not in owner_client.post(reverse("accelerator_rotate"), follow=True).content.decode()
        )
    label = Tenant.objects.get(pk=tenant.pk).label
    refused = owner_client.post(reverse("accelerator_rotate"), follow=True).content.decode()
    assert TOO_MANY in refused and "has a new address" not in refused
    assert Tenant.objects.get(pk=tenant.pk).label == label
    assert RetiredLabel.objects.filter(tenant=tenant).count() == 5
    zh = owner_client.post(
        reverse("accelerator_rotate"), follow=True, headers={"accept-language": "zh-CN"}
    )
    assert "24 小时内最多只能更换 5 次地址" in zh.content.decode()
    # 23 hours later, still five in the last 24 hours; a day later, one slot per old one.
    _age_rotations(tenant, timedelta(hours=23))
    with pytest.raises(services.RotationLimited):
        services.tenant_rotate(tenant=tenant)
    _age_rotations(tenant, timedelta(hours=1, seconds=1))
    allowed = owner_client.post(reverse("accelerator_rotate"), follow=True).content.decode()
    assert TOO_MANY not in allowed and "has a new address" in allowed
    assert Tenant.objects.get(pk=tenant.pk).label != label


@override_settings(ROTATE_PER_DAY=2)
def test_the_limit_is_a_setting_and_counts_only_this_tenant(owner, stranger):
    mine = services.tenant_start(user=owner)
    theirs = services.tenant_start(user=stranger)
    services.tenant_rotate(tenant=mine)
    services.tenant_rotate(tenant=theirs)
    services.tenant_rotate(tenant=theirs)
    services.tenant_rotate(tenant=mine)
    with pytest.raises(services.RotationLimited) as refused:
        services.tenant_rotate(tenant=mine)
    assert "2 times in 24 hours" in str(refused.value)
    # Staff rotations (abuse handling) are not limited.
    assert services.tenant_rotate(tenant=mine, limited=False).label != mine.label


@pytest.mark.django_db(transaction=True)
def test_parallel_rotations_at_the_limit_cannot_both_pass(owner):
    tenant = services.tenant_start(user=owner)
    for _ in range(4):
        services.tenant_rotate(tenant=tenant)
    start = threading.Barrier(2)
    results: list[str] = []

    def rotate() -> None:
        try:
            start.wait(10)
            services.tenant_rotate(tenant=tenant)
            results.append("rotated")
        except services.RotationLimited:
            results.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["refused", "rotated"]
    assert RetiredLabel.objects.filter(tenant=tenant).count() == 5
