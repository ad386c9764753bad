"""The OpenAPI schema and Swagger UI, with its assets served by the app itself (no CDN)."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db


def test_schema_lists_every_endpoint(client):
    resp = client.get("/api/schema/", headers={"Accept": "application/json"})
    assert resp.status_code == 200
    schema = resp.json() if resp["Content-Type"].startswith("application/json") else None
    if schema is None:
        import yaml

        schema = yaml.safe_load(resp.content)
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    assert {
        "/api/v1/me/",
        "/api/v1/accelerator/",
        "/api/v1/accelerator/rotate/",
        "/api/v1/quota/",
        "/api/v1/quota/grants/",
        "/api/v1/usage/",
        "/api/v1/invites/",
        "/api/v1/tokens/",
        "/api/v1/staff/tenants/{id}/grant/",
    } <= paths
    assert "personalToken" in schema["components"]["securitySchemes"]
    summary = schema["components"]["schemas"]["MonthSummary"]
    assert summary["properties"]["carried_over"]["type"] == "integer"
    assert "carried_over" in summary["required"]


def test_swagger_ui_assets_come_from_this_site(client, settings, tmp_path):
    # As deployed: collectstatic (scripts/run.sh) gathers the sidecar's files, WhiteNoise
    # serves them.
    from django.core.management import call_command

    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", "--no-input", verbosity=0)
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    scripts = re.findall(r'<script src="([^"]+)"', html)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
    assets = [u for u in scripts + styles if "swagger" in u]
    assert assets, html
    for url in assets:
        assert url.startswith("/static/"), url  # never a CDN
        resp = client.get(url)
        assert resp.status_code == 200, url
        assert len(b"".join(resp.streaming_content) if resp.streaming else resp.content) > 1000
    # The page's own start-up script is a file from this site too (no inline script: the CSP).
    assert "<script>" not in html
    assert "/api/docs/?script=" in scripts
    start = client.get("/api/docs/?script=")
    assert start.status_code == 200 and b"SwaggerUIBundle" in start.content
