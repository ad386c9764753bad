"""Schemathesis against our own OpenAPI schema: no input may make the API answer 5xx.

The app is called in-process through WSGI (no server, no port), with a staff token so the
staff endpoints are exercised too. Examples are bounded to keep the run well under a minute.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from accelerator.services import tenant_start

pytestmark = pytest.mark.django_db
_TOKEN: dict[str, str] = {}


@pytest.fixture
def api_schema(db, staff, owner):
    from django.core.wsgi import get_wsgi_application
    from django.utils import timezone

    from api.services import token_create

    tenant_start(user=staff)
    tenant_start(user=owner)
    # Each WSGI request would close the test's connection (and its transaction) otherwise;
    # Django's own test client does the same.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
    secret = token_create(
        scopes=("read", "write"),
        user=staff,
        name="fuzz",
        expires_at=timezone.now() + timedelta(days=1),
    ).secret
    _TOKEN["staff"] = secret
    yield schema
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_a_server_error(case):
    response = case.call(headers={"Authorization": f"Bearer {_TOKEN['staff']}"})
    case.validate_response(response, checks=[not_a_server_error])
