"""Operators see the platform: a real Prometheus, configured from the shipped
deploy/prometheus/prometheus.yml, scrapes the control plane's /metrics and the edge's nginx
exporter; after two pulls through a tenant and an ingestion its PromQL answers match what
the access log says was served."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from django.db import transaction

from edge.state import edge_state_record, verify_stats_read
from ingest.services import ingest_edge
from tests.conftest import require
from tests.e2e import harness

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
FILLS = ("HIT", "MISS", "EXPIRED")


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    require(path is not None, f"{name} is not installed (scripts/test.sh installs it)")
    return str(path)


def render_config(workdir: Path, *, web: str, exporter: str, edge: str) -> Path:
    """The shipped config with the test's targets, a 1 s scrape and the shipped rules."""
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    shutil.copy(PROM_DIR / "alerts.yml", workdir / "alerts.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["control-plane"]["static_configs"] = [{"targets": [web]}]
    jobs["edge-nginx"]["static_configs"] = [{"targets": [exporter], "labels": {"edge": edge}}]
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_value(port: int, promql: str, want: float, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        try:
            result = query(port, promql)
        except urllib.error.HTTPError as exc:  # 503 while Prometheus starts
            assert exc.code == 503, exc
            time.sleep(0.5)
            continue
        got = float(result[0]["value"][1]) if result else None
        if got is not None and abs(got - want) < 1e-9:
            return
        time.sleep(0.5)
    raise AssertionError(f"{promql} = {got}, want {want}")


@pytest.mark.django_db(transaction=True)
def test_prometheus_sees_the_pulls(edge, make_tenant, pull_with_skopeo, live_server, tmp_path):
    prometheus, promtool = _tool("prometheus"), _tool("promtool")
    exporter_bin = _tool("prometheus-nginx-exporter")
    tenant = make_tenant()
    pull_with_skopeo(tenant.label, "small")
    pull_with_skopeo(tenant.label, "small")  # the second one from the blob cache
    lines = edge.log_lines()
    log_size = edge.access_log.stat().st_size
    ingest_edge(edge=edge.name, path=edge.access_log)
    # The edge's gate sync records its digest check's counters (the blob fills of the pulls).
    slice_fills = verify_stats_read(edge.params.verify_listen).counts["fills"]
    assert slice_fills > 0
    with transaction.atomic():
        edge_state_record(
            edge=edge.name,
            tenants=1,
            reloaded=False,
            cache_dir=edge.params.cache_dir,
            cache_max_size=edge.params.cache_max_size,
            verify_listen=edge.params.verify_listen,
        )

    hits = sum(1 for x in lines if x["cache"] == "HIT")
    fills = sum(1 for x in lines if x["cache"] in FILLS)
    assert hits > 0 and fills > hits
    sent = sum(x["bytes_sent"] for x in lines)
    charged = sum(
        x["body_bytes_sent"]
        for x in lines
        if x["tenant"] == tenant.label and x["status"] in (200, 206)
    )

    exporter_port, prom_port = harness.free_port(), harness.free_port()
    procs = [
        harness.Proc.start(
            "nginx-exporter",
            [
                exporter_bin,
                f"-nginx.scrape-uri=http://{edge.params.health_listen}/stub_status",
                f"-web.listen-address=127.0.0.1:{exporter_port}",
            ],
            log=tmp_path / "exporter.log",
        )
    ]
    try:
        harness.wait_port(exporter_port, proc=procs[0])
        web = live_server.url.split("://", 1)[1]
        config = render_config(
            tmp_path, web=web, exporter=f"127.0.0.1:{exporter_port}", edge=edge.name
        )
        check = subprocess.run(
            [promtool, "check", "config", str(config)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        procs.append(
            harness.Proc.start(
                "prometheus",
                [
                    prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                log=tmp_path / "prometheus.log",
            )
        )
        harness.wait_port(prom_port, proc=procs[1], timeout=30)
        e = f'edge="{edge.name}"'
        try:
            wait_value(prom_port, 'up{job="control-plane"}', 1)
            wait_value(prom_port, 'up{job="edge-nginx"}', 1)
            wait_value(prom_port, "nginx_up", 1)
            wait_value(
                prom_port,
                f'sum(accel_edge_requests_total{{{e},cache="HIT"}})'
                f' / sum(accel_edge_requests_total{{{e},cache=~"HIT|MISS|EXPIRED"}})',
                hits / fills,
            )
            wait_value(prom_port, f"sum(accel_edge_requests_total{{{e}}})", len(lines))
            wait_value(prom_port, f"sum(accel_edge_sent_bytes_total{{{e}}})", sent)
            wait_value(prom_port, f"accel_ingest_log_bytes_total{{{e}}}", log_size)
            wait_value(prom_port, f"accel_ingest_lines_total{{{e}}}", len(lines))
            wait_value(prom_port, f'accel_tenant_month_bytes{{tenant="{tenant.pk}"}}', charged)
            wait_value(prom_port, f"accel_ingest_lag_seconds{{{e}}}", 0)
            wait_value(prom_port, f"accel_edge_verify_up{{{e}}}", 1)
            wait_value(prom_port, f"accel_edge_fills_total{{{e}}}", slice_fills)
            wait_value(prom_port, f"accel_edge_digest_mismatches_total{{{e}}}", 0)
            # The shipped rules are loaded and evaluated.
            url = f"http://127.0.0.1:{prom_port}/api/v1/rules"
            with urllib.request.urlopen(url, timeout=10) as r:
                groups = json.loads(r.read())["data"]["groups"]
            assert {rule["name"] for g in groups for rule in g["rules"]} >= {"IngestionLagging"}
        except AssertionError:
            raise AssertionError(procs[1].log_tail(3000) + procs[0].log_tail(1000)) from None
    finally:
        for p in reversed(procs):
            p.stop()


def test_a_refusal_carries_the_request_id_of_its_access_log_line(edge):
    refused = edge.get("nosuchtenant0", "/v2/library/x/manifests/latest")
    assert refused.status == 404, refused.body
    rid = refused.headers["X-Request-ID"]
    assert rid and len(rid) == 32
    line = [x for x in edge.log_lines() if x["request_id"] == rid]
    assert len(line) == 1 and line[0]["status"] == 404, line
    # The health listener answers outside the gate.
    health = harness.request(
        int(edge.params.health_listen.rsplit(":", 1)[1]), "GET", "/healthz", host="localhost"
    )
    assert health.status == 200
