"""Chromium: sign up, Start, the waiting state; a real dockerd pulls through the mirror and the
page turns Connected with Docker's version without a reload; after exhaustion the refusal shows
with its reason. Ingestion runs as it does in production, on its own, every second."""

from __future__ import annotations

import re
import threading

import pytest
from django.core import mail
from django.db import connection

from accelerator.models import Tenant
from accelerator.services import tenant_mark_exhausted
from ingest.services import ingest_edge
from tests.conftest import PASSWORD
from tests.e2e.conftest import sync_gate

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WITHIN_MS = 15_000  # the promise: Connected within 15 s of the first request


class Ingestion(threading.Thread):
    """The beat's ingestion, in a thread: ingest the edge's log every second until stopped."""

    def __init__(self, edge) -> None:
        super().__init__(daemon=True)
        self.edge = edge
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                ingest_edge(edge=self.edge.name, path=self.edge.access_log, max_seconds=1)
                self.stopping.wait(1.0)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=60)


def sign_up_and_start(page) -> Tenant:
    page.goto("/accounts/signup/")
    page.fill("input[name=email]", "status@example.com")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.get_by_role("button", name="Sign Up").click()
    page.wait_for_url("**/accounts/confirm-email/")
    link = re.search(r"(https?://\S+/accounts/confirm-email/\S+/)", mail.outbox[-1].body).group(1)
    page.goto(link)
    page.get_by_role("button", name="Confirm").click()
    page.goto("/accounts/login/")
    page.fill("input[name=login]", "status@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/console/")
    page.get_by_test_id("start").click()
    page.wait_for_selector("[data-testid=mirror-url]")
    return Tenant.objects.get(user__email="status@example.com")


def test_waiting_then_connected_then_refused_without_a_reload(
    page, edge, upstream, hosts, docker_daemon
):
    tenant = sign_up_and_start(page)
    title = page.get_by_test_id("status-title")
    assert title.inner_text() == "Waiting for your first pull"
    assert page.get_by_test_id("try-docker").inner_text() == "docker pull hello-world"
    assert f"/setup/{tenant.label}.sh | sudo sh" in page.get_by_test_id("setup-all").inner_text()
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    hosts.add(edge.host(tenant.label, port=False))
    sync_gate(edge)
    ingestion = Ingestion(edge)
    ingestion.start()
    try:
        daemon = docker_daemon(mirrors=[edge.url(tenant.label)])
        version = daemon.cli("version", "--format", "{{.Server.Version}}").stdout.strip()
        pulled = daemon.cli("pull", "accel-small")
        assert pulled.returncode == 0, pulled.stderr + daemon.log()[-3000:]
        page.wait_for_selector("[data-testid=status-card][data-state=connected]", timeout=WITHIN_MS)
        text = " ".join(title.inner_text().split())
        assert text.startswith(f"Connected — Docker {version}, last request"), text
        assert "library/accel-small" in page.get_by_test_id("recent-pulls").inner_text()
        assert page.evaluate("window.__sameDocument") is True

        # Used up: the edge refuses the manifest, Docker falls back (and fails: no Docker Hub
        # here), and the console says why, still without a reload.
        tenant_mark_exhausted(tenant_id=tenant.pk)
        sync_gate(edge)
        refused = daemon.cli("pull", f"accel-multi:{upstream.images['multi'].tag}")
        assert refused.returncode != 0
        banner = page.wait_for_selector("[data-testid=refusing]", timeout=WITHIN_MS)
        assert "quota used up — Docker pulled these from Docker Hub directly" in banner.inner_text()
        assert page.evaluate("window.__sameDocument") is True
    finally:
        ingestion.stop()
    assert ingestion.error is None, repr(ingestion.error)
