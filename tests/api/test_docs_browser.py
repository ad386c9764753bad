"""Swagger UI in Chromium: it renders our operations and loads nothing from another host."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_swagger_ui_renders_from_this_site_only(page, live_server):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto("/api/docs/")
    page.get_by_text("/api/v1/usage/", exact=True).first.wait_for()
    assert page.get_by_text("/api/v1/staff/tenants/{id}/grant/", exact=True).count() == 1
    assert requested
    foreign = [
        u for u in requested if not u.startswith(live_server.url) and not u.startswith("data:")
    ]
    assert foreign == []
