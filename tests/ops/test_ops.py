"""/metrics, /healthz, /readyz, request ids, JSON logs and the counters behind the metrics."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.utils import timezone

from accelerator.models import Tenant
from accelerator.services import tenant_start
from edge.models import EdgeState
from ingest import parser
from ingest.models import EdgeIngest, EdgeTraffic
from ops import request_id
from ops.logs import JsonFormatter, RequestIdFilter
from ops.signals import _task_failed
from quota.periods import floor_hour
from quota.usage import UsageDelta, usage_apply

LINE = (
    '{{"ts":1764355200.5,"edge":"local","tenant":"{t}","host":"h","method":"GET","uri":"/v2/",'
    '"status":{s},"bytes_sent":{b},"body_bytes_sent":{b},"completion":"OK","request_time":0.1,'
    '"request_id":"abc","cache":"{c}"}}\n'
)


def test_the_parser_counts_traffic_by_status_and_cache_status():
    log = "".join(
        [
            LINE.format(t="a", s=200, b=100, c="HIT"),
            LINE.format(t="a", s=200, b=50, c="HIT"),
            LINE.format(t="b", s=200, b=70, c="MISS"),
            LINE.format(t="", s=404, b=10, c=""),
        ]
    ).encode()
    batch = parser.read_batch(io.BytesIO(log), start=0, max_lines=100, max_bytes=1 << 30)
    assert batch.traffic == {(200, "HIT"): [2, 150], (200, "MISS"): [1, 70], (404, ""): [1, 10]}


def test_healthz_answers_without_the_database(client):
    # No django_db mark: any database access here would raise.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_every_dependency(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {"database": "ok", "cache": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_metrics_are_refused_from_other_addresses(client, settings):
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 403
    settings.METRICS_ALLOWED_IPS = ["192.0.2.0/24"]
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


def test_metrics_are_refused_through_the_console_proxy_and_name_no_label(client, django_user_model):
    # Through the console's nginx every client arrives from 127.0.0.1, with X-Forwarded-Proto.
    proxied = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_PROTO="https")
    assert proxied.status_code == 403
    user = django_user_model.objects.create_user(email="top@example.com", password="x")
    tenant = tenant_start(user=user)
    usage_apply(deltas=[UsageDelta(tenant.pk, "e1", floor_hour(timezone.now()), 5000, 1)])
    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert f'accel_tenant_month_bytes{{tenant="{tenant.pk}"}} 5000.0' in text
    assert tenant.label not in text and "top@example.com" not in text


@pytest.mark.django_db
def test_metrics_export_the_platform_state(client, django_user_model):
    user = django_user_model.objects.create_user(email="ops@example.com", password="x" * 12)
    Tenant.objects.create(user=user, label="opslabel1")
    now = timezone.now()
    EdgeIngest.objects.create(
        edge="east", lines_total=7, bytes_total=900, seconds_behind=3.5, last_run_at=now
    )
    EdgeTraffic.objects.create(edge="east", status=200, cache="HIT", requests=3, bytes_sent=300)
    EdgeTraffic.objects.create(edge="east", status=200, cache="MISS", requests=1, bytes_sent=99)
    EdgeState.objects.create(
        edge="east",
        gate_synced_at=now,
        gate_reloads_total=2,
        cache_bytes=5,
        cache_max_bytes=10,
        cache_measured_at=now,
    )
    _task_failed(sender=type("T", (), {"name": "ingest.tasks.ingest_edge_log"})())
    _task_failed(sender=type("T", (), {"name": "ingest.tasks.ingest_edge_log"})())
    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    for line in (
        'accel_ingest_lines_total{edge="east"} 7.0',
        'accel_ingest_log_bytes_total{edge="east"} 900.0',
        'accel_ingest_lag_seconds{edge="east"} 3.5',
        'accel_edge_requests_total{cache="HIT",code="200",edge="east",status_class="2xx"} 3.0',
        'accel_edge_upstream_reads_total{edge="east"} 1.0',
        'accel_edge_upstream_bytes_total{edge="east"} 99.0',
        'accel_edge_gate_reloads_total{edge="east"} 2.0',
        'accel_edge_cache_bytes{edge="east"} 5.0',
        'accel_tenants{state="active"} 1.0',
        'accel_invites{status="held"} 0.0',
        'accel_celery_task_failures_total{task="ingest.tasks.ingest_edge_log"} 2.0',
        "accel_http_request_duration_seconds_bucket",
    ):
        assert line in text, line
    assert "ops@example.com" not in text


def test_the_request_id_is_taken_from_the_proxy_or_made(client):
    given = client.get("/healthz", HTTP_X_REQUEST_ID="0123456789abcdef0123456789abcdef")
    assert given["X-Request-ID"] == "0123456789abcdef0123456789abcdef"
    made = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert len(made["X-Request-ID"]) == 32 and " " not in made["X-Request-ID"]


def test_json_log_lines_carry_the_request_id():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello %s", ("you",), None)
    token = request_id.current.set("rid-42")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id.current.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello you"
    assert line["request_id"] == "rid-42"
    assert line["level"] == "WARNING"
