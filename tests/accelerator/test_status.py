"""The console's status card (page and JSON poll) and the API's accelerator activity fields."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accelerator.activity import ActivityDelta, activity_record
from accelerator.clients import Pull
from accelerator.models import Tenant
from accelerator.services import tenant_start

pytestmark = pytest.mark.django_db

DOCKER = "docker/24.0.7 go/go1.20.10 os/linux UpstreamClient(Docker-Client/24.0.7 \\(linux\\))"


def _seen(tenant: Tenant, *, ago: float = 120, agent=DOCKER, pulls=(), refusals=None):
    t = timezone.now().timestamp() - ago
    activity_record(
        deltas=[
            ActivityDelta(
                tenant_id=tenant.pk,
                retired=False,
                first=t,
                last=t,
                agent=agent,
                pulls=list(pulls),
                refusals=refusals or {},
            )
        ]
    )


def test_waiting_then_connected_on_the_page_and_in_the_poll(owner_client, owner, settings):
    settings.SITE_URL = "https://accel.example.io"
    tenant = tenant_start(user=owner)
    page = html.unescape(owner_client.get(reverse("console")).content.decode())
    assert "Waiting for your first pull" in page
    assert f"curl -fsSL https://accel.example.io/setup/{tenant.label}.sh | sudo sh" in page
    assert "docker pull hello-world" in page
    assert "js/status.js" in page and "<script>" not in page  # no inline script (CSP)
    poll = owner_client.get(reverse("console_status"))
    assert poll.status_code == 200 and poll["Cache-Control"] == "no-store"
    assert poll.json()["state"] == "waiting"
    t = timezone.now().timestamp() - 100
    _seen(tenant, pulls=[Pull("library/nginx", "1.25", 12_345_678, t, t)])
    data = owner_client.get(reverse("console_status")).json()
    assert data["state"] == "connected"
    card = html.unescape(data["html"])
    assert "Connected — Docker 24.0.7, last request 2 minutes ago" in " ".join(card.split())
    assert "library/nginx" in card and "1.25" in card and "12.3 MB" in card
    assert "refusing" not in card


def test_a_current_refusal_shows_a_banner_in_plain_words(owner_client, owner):
    tenant = tenant_start(user=owner)
    Tenant.objects.filter(pk=tenant.pk).update(exhausted_at=timezone.now() - timedelta(hours=1))
    t = timezone.now().timestamp() - 30
    _seen(tenant, refusals={429: (t, "/v2/library/redis/manifests/7")})
    card = html.unescape(owner_client.get(reverse("console_status")).json()["html"])
    assert 'data-testid="refusing"' in card
    assert "quota used up — Docker pulled these from Docker Hub directly" in card
    page = html.unescape(owner_client.get(reverse("console")).content.decode())
    assert "Your accelerator is refusing pulls." in page
    # A later pull through the accelerator ends the banner; the refusal stays in the history.
    _seen(tenant, ago=1, pulls=[Pull("library/redis", "7", 10, t + 20, t + 20)])
    card = html.unescape(owner_client.get(reverse("console_status")).json()["html"])
    assert 'data-testid="refusing"' not in card and "Last refusal" in card


def test_status_in_chinese(owner_client, owner):
    tenant_start(user=owner)
    data = owner_client.get(reverse("console_status"), headers={"accept-language": "zh-CN"})
    assert "等待" in data.json()["html"]


def test_hostile_values_are_escaped(owner_client, owner):
    tenant = tenant_start(user=owner)
    t = timezone.now().timestamp()
    _seen(
        tenant,
        agent="<img src=x onerror=alert(1)>",
        pulls=[Pull("library/<b>x</b>", "<i>", 1, t, t)],
    )
    card = owner_client.get(reverse("console_status")).json()["html"]
    assert "<img" not in card and "<b>x" not in card and "<i>" not in card
    assert "another client" in card


def test_poll_needs_login_and_a_tenant_and_takes_get_only(owner_client):
    assert Client().get(reverse("console_status")).status_code == 302  # to the login page
    assert owner_client.get(reverse("console_status")).status_code == 404  # no tenant yet
    assert owner_client.post(reverse("console_status")).status_code == 405


def test_a_stranger_sees_only_their_own_status(owner, stranger, client):
    tenant = tenant_start(user=owner)
    _seen(tenant)
    tenant_start(user=stranger)
    client.force_login(stranger)
    assert client.get(reverse("console_status")).json()["state"] == "waiting"
