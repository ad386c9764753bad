"""/metrics in Prometheus's text format (README "Operations" lists every metric).

Two sources:
- the database, read at scrape time by PlatformCollector: ingestion health, the edges' traffic
  as ingested from their access logs, gate syncs, tenants, invites, task failures. Every
  gunicorn worker gives the same answer, so no multiprocess bookkeeping is needed for them;
- the web's request latency, a histogram each process observes. With several gunicorn
  workers set PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode; gunicorn's
  child_exit hook marks dead workers): the scrape then adds up every worker's files.
  Without it, each scrape sees only the worker that answered it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from django.conf import settings
from prometheus_client import CollectorRegistry, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ops.selectors import UPSTREAM_READS, Snapshot, ops_snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REQUEST_SECONDS = Histogram(
    "accel_http_request_duration_seconds",
    "Time the web took to answer a request, by method and status class.",
    ["method", "status_class"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=None,  # registered per scrape below (or read from the multiprocess files)
)
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
# The digest check's counters (edge.blob_verify.COUNTERS) as metrics, from EdgeState.
FILL_COUNTERS = {
    "fills": ("accel_edge_fills", "Slice fills the edge started from its upstream or parent."),
    "joins": ("accel_edge_fill_joins", "Requests that joined a fill under way (no second read)."),
    "resumes": ("accel_edge_fill_resumes", "Fills cut mid-slice, read on from where they stopped."),
    "cut": ("accel_edge_fills_cut", "Fills that failed: every request reading them was cut."),
    "digest_mismatches": (
        "accel_edge_digest_mismatches",
        "Blobs whose bytes did not match their digest (cut, never cached, evicted).",
    ),
    "spooled": ("accel_edge_fills_spooled", "Fills spooled to files: the memory budget was full."),
}


def request_observe(*, method: str, status: int, seconds: float) -> None:
    REQUEST_SECONDS.labels(
        method=method if method in _METHODS else "other", status_class=f"{status // 100}xx"
    ).observe(seconds)


def _age(now, then) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())


class PlatformCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from platform_metrics(ops_snapshot())


def platform_metrics(s: Snapshot) -> Iterator[Metric]:
    def counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
        return CounterMetricFamily(name, doc, labels=labels)

    def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=labels)

    # Ingestion, per edge (EdgeIngest).
    lines = counter("accel_ingest_lines", "Well-formed access-log lines ingested.", ["edge"])
    log_bytes = counter("accel_ingest_log_bytes", "Access-log bytes consumed.", ["edge"])
    malformed = counter("accel_ingest_malformed_lines", "Malformed access-log lines.", ["edge"])
    unknown = counter(
        "accel_ingest_unknown_requests", "Requests for labels that are no tenant's.", ["edge"]
    )
    lag_s = gauge("accel_ingest_lag_seconds", "How far ingestion is behind the log.", ["edge"])
    lag_b = gauge("accel_ingest_lag_bytes", "Access-log bytes not ingested yet.", ["edge"])
    run_age = gauge(
        "accel_ingest_last_run_age_seconds", "Seconds since ingestion last ran.", ["edge"]
    )
    for h in s.ingest:
        lines.add_metric([h.edge], h.lines_total)
        log_bytes.add_metric([h.edge], h.bytes_total)
        malformed.add_metric([h.edge], h.malformed_total)
        unknown.add_metric([h.edge], h.unknown_requests_total)
        lag_s.add_metric([h.edge], h.seconds_behind)
        lag_b.add_metric([h.edge], h.bytes_behind)
        age = _age(s.now, h.last_run_at)
        if age is not None:
            run_age.add_metric([h.edge], age)
    yield from (lines, log_bytes, malformed, unknown, lag_s, lag_b, run_age)

    # The edges' own state (EdgeState, written by their gate syncs).
    sync_age = gauge(
        "accel_gate_sync_age_seconds", "Seconds since the edge's last gate sync.", ["edge"]
    )
    reloads = counter("accel_edge_gate_reloads", "nginx reloads for a new gate map.", ["edge"])
    gate_tenants = gauge("accel_edge_gate_tenants", "Tenants in the edge's gate map.", ["edge"])
    cache_b = gauge("accel_edge_cache_bytes", "Disk used by the edge's blob cache.", ["edge"])
    cache_max = gauge(
        "accel_edge_cache_max_bytes", "The edge's EDGE_CACHE_MAX_SIZE in bytes.", ["edge"]
    )
    verify_up = gauge(
        "accel_edge_verify_up",
        "1 when the edge's gate sync last read its digest check, 0 when it could not.",
        ["edge"],
    )
    fill_memory = gauge(
        "accel_edge_fill_memory_bytes", "Memory the digest check's fills hold now.", ["edge"]
    )
    fill_counters = {
        name: counter(metric, doc, ["edge"]) for name, (metric, doc) in FILL_COUNTERS.items()
    }
    for e in s.edges:
        age = _age(s.now, e.gate_synced_at)
        if age is not None:
            sync_age.add_metric([e.edge], age)
        reloads.add_metric([e.edge], e.gate_reloads_total)
        gate_tenants.add_metric([e.edge], e.gate_tenants)
        if e.cache_measured_at is not None:
            cache_b.add_metric([e.edge], e.cache_bytes)
            cache_max.add_metric([e.edge], e.cache_max_bytes)
        if e.verify_error or e.verify_read_at is not None:  # a sync has tried to read it
            verify_up.add_metric([e.edge], 0 if e.verify_error else 1)
        if e.verify_read_at is not None:
            fill_memory.add_metric([e.edge], e.fill_memory_bytes)
            for name, family in fill_counters.items():
                family.add_metric([e.edge], e.fill_counts.get(name, 0))
    yield from (sync_age, reloads, gate_tenants, cache_b, cache_max, verify_up, fill_memory)
    yield from fill_counters.values()

    # What the edges served, from their access logs (EdgeTraffic).
    labels = ["edge", "code", "status_class", "cache"]
    requests = counter("accel_edge_requests", "Requests the edge answered.", labels)
    sent = counter("accel_edge_sent_bytes", "Bytes the edge sent (headers and body).", labels)
    reads: dict[str, list[int]] = {}
    for t in s.traffic:
        key = [t.edge, str(t.status), f"{t.status // 100}xx", t.cache or "none"]
        requests.add_metric(key, t.requests)
        sent.add_metric(key, t.bytes_sent)
        acc = reads.setdefault(t.edge, [0, 0])
        if t.cache in UPSTREAM_READS:
            acc[0] += t.requests
            acc[1] += t.bytes_sent
    up_reads = counter("accel_edge_upstream_reads", "Blob fills: GETs the cache missed.", ["edge"])
    up_bytes = counter(
        "accel_edge_upstream_bytes", "Bytes of the blob fills (as sent to the client).", ["edge"]
    )
    for edge, (n, b) in sorted(reads.items()):
        up_reads.add_metric([edge], n)
        up_bytes.add_metric([edge], b)
    yield from (requests, sent, up_reads, up_bytes)

    tenants = gauge("accel_tenants", "Tenants by state.", ["state"])
    for state, n in sorted(s.tenants.items()):
        tenants.add_metric([state], n)
    invites = gauge("accel_invites", "Invites by status.", ["status"])
    for status, n in sorted(s.invites.items()):
        invites.add_metric([status], n)
    top = gauge(
        "accel_tenant_month_bytes",
        "Bytes charged this UTC month, the top tenants by label.",
        ["tenant"],
    )
    for label, b in s.top_tenants:
        top.add_metric([label], b)
    failures = counter("accel_celery_task_failures", "Celery tasks that failed.", ["task"])
    for f in s.failures:
        failures.add_metric([f.task], f.count)
    yield from (tenants, invites, top, failures)

    limit = gauge(
        "accel_upstream_pull_limit", "UPSTREAM_PULL_LIMIT: the upstream's pull allowance.", []
    )
    limit.add_metric([], settings.UPSTREAM_PULL_LIMIT)
    window = gauge("accel_upstream_pull_window_seconds", "UPSTREAM_PULL_WINDOW_SECONDS.", [])
    window.add_metric([], settings.UPSTREAM_PULL_WINDOW_SECONDS)
    yield from (limit, window)

    # As each edge last read them from the upstream's ratelimit headers (edge/allowance.py).
    labels = ["edge", "registry"]
    rl_limit = gauge("accel_upstream_ratelimit_limit", "An upstream's ratelimit-limit.", labels)
    rl_left = gauge(
        "accel_upstream_ratelimit_remaining", "An upstream's ratelimit-remaining.", labels
    )
    for a in s.allowances:
        rl_limit.add_metric([a.edge, a.registry], a.limit or 0)
        rl_left.add_metric([a.edge, a.registry], a.remaining or 0)
    yield from (rl_limit, rl_left)


def metrics_text() -> bytes:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REQUEST_SECONDS)
    registry.register(PlatformCollector())
    return generate_latest(registry)
