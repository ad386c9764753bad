"""The API's accelerator resource carries what the edge saw (first and last request, client,
last refusal, recent pulls)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from accelerator.clients import Pull
from accelerator.services import tenant_start
from tests.accelerator.test_status import _seen

pytestmark = pytest.mark.django_db


def test_api_accelerator_carries_the_activity(owner, owner_token, api):
    tenant = tenant_start(user=owner)
    before = api(owner_token).get("/api/v1/accelerator/").json()
    assert before["first_seen_at"] is None and before["client"] is None
    assert before["recent_pulls"] == [] and before["last_refusal"] is None
    assert before["setup_url"].endswith(f"/setup/{tenant.label}.sh")
    t = timezone.now().timestamp() - 60
    _seen(
        tenant,
        pulls=[Pull("library/nginx", "latest", 1000, t, t)],
        refusals={403: (t + 1, "/v2/library/nginx/manifests/latest")},
    )
    after = api(owner_token).get("/api/v1/accelerator/").json()
    assert after["client"]["kind"] == "docker" and after["client"]["version"] == "24.0.7"
    assert after["client"]["cli_version"] == "24.0.7"
    assert after["recent_pulls"][0]["repository"] == "library/nginx"
    assert after["recent_pulls"][0]["bytes"] == 1000
    assert after["last_refusal"]["reason"] == "suspended"
    me = api(owner_token).get("/api/v1/me/").json()["accelerator"]
    assert me["client"]["name"] == "Docker 24.0.7"
