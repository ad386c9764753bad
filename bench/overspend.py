"""bench/overspend: tenants who pull flat out against a small allowance, and what they get.

The load run of issue 13 ("the meter holds against a tenant who tries to beat it"): a real
nginx edge and pull-through registry rendered from deploy/ (tests/e2e/harness.py), an upstream
Distribution registry with generated images, a scratch PostgreSQL database and Redis. The
control plane's periodic work runs in this process, in two threads at the production intervals
(INGEST_INTERVAL_SECONDS and EDGE_GATE_SYNC_SECONDS, as beat would send them): ingestion of the
edge's access log (ingest.services.ingest_edge, enforcement after every batch) and the gate
sync (edge.gate_sync.gate_sync, graceful reload when the map changes). No Celery worker: the
same functions, without the broker's own delay.

BENCH_TENANTS tenants each run BENCH_THREADS clients that fetch a manifest by digest and then
its blobs by digest, again and again, for BENCH_SECONDS; a refused blob is asked again after
50 ms until it is served, a refused manifest is skipped (the digests are known), so every
client takes all the bytes it can (the pause only keeps the clients from starving the edge of
CPU). A third of the way through, the access log is rotated by rename (+ reopen), at two
thirds by copytruncate. Afterwards ingestion catches up and the bench compares.

Figures:
- used ÷ allowance per tenant, max and mean (target: at most 1.25, or 1 + largest blob ÷
  allowance when that is larger);
- meter exactness: body bytes of the 200/206 lines in every log file minus the bytes charged
  (must be 0), and the clients' own count of the bytes they received, for comparison;
- the overspend bound (accelerator.gate.overspend_bound) for these settings and blobs.

Environment (optional):
  BENCH_TENANTS=8  BENCH_THREADS=16 (EDGE_TENANT_CONNECTIONS)  BENCH_SECONDS=90
  BENCH_QUOTA_BYTES=1000000000 (1 GB, so that tenants run out well within the run: at the
  default low limits, about 4 MB/s, the last 10 % of 2 GB alone takes 50 s)
  BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/bench_overspend, recreated)
  BENCH_REDIS_URL (default redis://127.0.0.1:6379/14)
  and any setting (EDGE_TENANT_RATE, EDGE_LOW_RATE, GATE_LOW_REMAINING_PERCENT, ...).
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import shutil
import signal
import statistics
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import figure, recreate_database, setup_django  # noqa: E402

TENANTS = int(os.environ.get("BENCH_TENANTS", "8"))
THREADS = int(os.environ.get("BENCH_THREADS", "16"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "90"))
QUOTA = int(os.environ.get("BENCH_QUOTA_BYTES", str(1 * 10**9)))
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_overspend")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
MB = 1024 * 1024
# Three images; the largest blob bounds what one download in flight can add.
LAYER_SIZES = {"alpha": 8 * MB, "beta": 4 * MB, "gamma": 1 * MB}
DOMAIN = "m.localhost"
EDGE = "bench-overspend"


class Clients:
    """Every tenant's clients; counts what each tenant received with a 200."""

    def __init__(self, port: int, images: dict) -> None:
        self.port = port
        self.images = images
        self.stop = threading.Event()
        self.received: dict[str, int] = defaultdict(int)
        self.statuses: dict[int, int] = defaultdict(int)
        self.errors: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()

    def _get(self, conn, host: str, path: str, buf: bytearray) -> tuple[int, int]:
        conn.request("GET", path, headers={"Host": host, "Accept": MT_ACCEPT})
        resp = conn.getresponse()
        got = 0
        view = memoryview(buf)
        while True:
            n = resp.readinto(view)
            if not n:
                break
            got += n
        if resp.will_close:
            conn.close()
        return resp.status, got

    def run(self, label: str, offset: int) -> None:
        host = f"{label}.{DOMAIN}"
        names = sorted(self.images)
        buf = bytearray(1 * MB)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        i = offset
        while not self.stop.is_set():
            repo, image = names[i % len(names)], self.images[names[i % len(names)]]
            i += 1
            paths = [f"/v2/library/{repo}/manifests/{image.digest}"]
            paths += [f"/v2/library/{repo}/blobs/{b.digest}" for b in image.blobs]
            for n, path in enumerate(paths):
                self._until_served(conn, host, path, buf, label, insist=n > 0)
        conn.close()

    def _until_served(
        self, conn, host: str, path: str, buf: bytearray, label: str, insist: bool
    ) -> None:
        """Ask again and again (insist) or once, as a client that wants every byte would."""
        while not self.stop.is_set():
            try:
                status, got = self._get(conn, host, path, buf)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                with self.lock:
                    self.errors[type(exc).__name__] += 1
                time.sleep(0.05)
                continue
            with self.lock:
                self.statuses[status] += 1
                if status in (200, 206):
                    self.received[label] += got
            if status in (200, 206) or not insist:
                return
            time.sleep(0.05)


def loop(stop: threading.Event, interval: float, fn, name: str, errors: list) -> None:
    from django.db import close_old_connections

    while not stop.is_set():
        started = time.monotonic()
        try:
            fn()
        except Exception as exc:  # keep going, like beat would
            errors.append(f"{name}: {exc!r}")
            close_old_connections()
        stop.wait(max(0.0, interval - (time.monotonic() - started)))
    close_old_connections()


def log_bytes(log: Path) -> dict[str, int]:
    """Body bytes of the 200 and 206 lines per tenant, in every file of the rotated log."""
    totals: dict[str, int] = defaultdict(int)
    for path in sorted(log.parent.glob(log.name + "*")):
        for raw in path.read_bytes().splitlines():
            line = json.loads(raw)
            if line["status"] in (200, 206) and line["tenant"]:
                totals[line["tenant"]] += line["body_bytes_sent"]
    return totals


def copytruncate(log: Path, copy: Path) -> None:
    """logrotate's copytruncate, with the smallest window it can have between copy and truncate."""
    with open(log, "r+b") as src, open(copy, "wb") as dst:
        shutil.copyfileobj(src, dst)
        dst.write(src.read())  # anything appended meanwhile
        src.truncate(0)


MT_ACCEPT = ""


def main() -> int:
    global MT_ACCEPT
    from tests.e2e import harness

    for tool in ("docker-registry", "nginx"):
        if not harness.which(tool):
            print(f"bench/overspend: {tool} is not installed; skipped")
            return 0
    MT_ACCEPT = harness.MT_MANIFEST
    os.environ["QUOTA_MONTHLY_BYTES"] = str(QUOTA)
    os.environ.setdefault("INGEST_ROTATED_IDLE_SECONDS", "3")
    os.environ["EDGE_NAME"] = EDGE
    os.environ["MIRROR_DOMAIN"] = DOMAIN
    recreate_database(DB_URL)
    setup_django(DB_URL, REDIS_URL)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db.models import Sum

    from accelerator.services import tenant_start
    from edge import render
    from edge.gate_sync import gate_sync
    from ingest.services import ingest_edge
    from quota.models import UsageBucket
    from quota.month import month_summary

    try:
        from accelerator.gate import meter_lag_seconds, overspend_bound
    except ImportError:  # before bounded overspend: no bound to print
        overspend_bound = meter_lag_seconds = None

    work = harness.worker_readable_dir("bench-overspend-")
    procs: list = []
    stop_loops = threading.Event()
    loop_errors: list[str] = []
    threads: list[threading.Thread] = []
    try:
        upstream = harness.start_registry(work / "upstream")
        procs.append(upstream)
        images = {
            name: harness.make_image(
                files={f"{name}.bin": os.urandom(size)},
                note=name,
            )
            for name, size in LAYER_SIZES.items()
        }
        for name, image in images.items():
            harness.push_image(upstream.port, f"library/{name}", "latest", image)
        largest = max(b.size for image in images.values() for b in image.blobs)
        # The edge with this project's limits (the harness leaves active tenants uncapped).
        fields = {f.name for f in dataclasses.fields(render.EdgeParams)}
        limits = {
            "tenant_connections": settings.EDGE_TENANT_CONNECTIONS,
            "tenant_rate": getattr(settings, "EDGE_TENANT_RATE", None),
            "tenant_request_rate": getattr(settings, "EDGE_TENANT_REQUEST_RATE", None),
            "tenant_request_burst": getattr(settings, "EDGE_TENANT_REQUEST_BURST", None),
            "low_connections": getattr(settings, "EDGE_LOW_CONNECTIONS", None),
            "low_rate": getattr(settings, "EDGE_LOW_RATE", None),
            "low_request_rate": getattr(settings, "EDGE_LOW_REQUEST_RATE", None),
            "low_request_burst": getattr(settings, "EDGE_LOW_REQUEST_BURST", None),
        }
        limits = {k: v for k, v in limits.items() if k in fields and v is not None}
        edge = harness.start_edge(
            work, upstream_url=upstream.url, name=EDGE, mirror_domain=DOMAIN, **limits
        )
        procs.append(edge)
        user_model = get_user_model()
        labels = []
        for i in range(TENANTS):
            user = user_model.objects.create_user(
                email=f"bench{i}@example.com", password="bench-pass-12345"
            )
            labels.append(tenant_start(user=user).label)
        gate_sync(run_dir=edge.run_dir)
        edge.reload()
        clients = Clients(edge.port, images)
        # Warm the blob cache, so the run measures the gate and not the upstream.
        for name, image in images.items():
            for b in image.blobs:
                resp = edge.get(labels[0], f"/v2/library/{name}/blobs/{b.digest}")
                assert resp.status == 200
                clients.received[labels[0]] += len(resp.body)
        log = edge.access_log
        # The warm-up lines are charged like any (and compared like any).
        ingest_edge(edge=EDGE, path=str(log))

        print(
            f"bench/overspend: {TENANTS} tenants x {THREADS} clients for {SECONDS:.0f} s, "
            f"allowance {QUOTA / 1e9:.2f} GB, largest blob {largest / 1e6:.1f} MB, "
            f"limits {limits}, grace {settings.GATE_BLOB_GRACE_SECONDS} s, "
            f"low at {getattr(settings, 'GATE_LOW_REMAINING_PERCENT', '-')} %",
            flush=True,
        )
        for name, interval, fn in (
            (
                "ingest",
                settings.INGEST_INTERVAL_SECONDS,
                lambda: ingest_edge(edge=EDGE, path=str(log)),
            ),
            ("gate sync", settings.EDGE_GATE_SYNC_SECONDS, lambda: gate_sync(run_dir=edge.run_dir)),
        ):
            t = threading.Thread(target=loop, args=(stop_loops, interval, fn, name, loop_errors))
            t.start()
            threads.append(t)

        workers = [
            threading.Thread(target=clients.run, args=(label, j))
            for label in labels
            for j in range(THREADS)
        ]
        started = time.monotonic()
        for w in workers:
            w.start()
        rotated = truncated = False
        while time.monotonic() - started < SECONDS:
            elapsed = time.monotonic() - started
            if not rotated and elapsed >= SECONDS / 3:
                os.rename(log, log.with_name(log.name + ".1"))
                os.kill(edge.nginx.pid, signal.SIGUSR1)  # reopen
                rotated = True
                print(f"  {elapsed:.0f} s: access log renamed, nginx reopened it", flush=True)
            if not truncated and elapsed >= 2 * SECONDS / 3:
                copytruncate(log, log.with_name(log.name + ".2"))
                truncated = True
                print(f"  {elapsed:.0f} s: access log copytruncated", flush=True)
            time.sleep(0.2)
        clients.stop.set()
        for w in workers:
            w.join()
        served_seconds = time.monotonic() - started
        # Everything written, then ingested: the rotated file is finished once it is idle.
        edge.flush_log()
        time.sleep(settings.INGEST_ROTATED_IDLE_SECONDS + 1)
        stop_loops.set()
        for t in threads:
            t.join()
        for _ in range(3):
            ingest_edge(edge=EDGE, path=str(log))

        in_log = log_bytes(log)
        ids = dict(
            user_model.objects.filter(tenant__label__in=labels).values_list(
                "tenant__label", "tenant__id"
            )
        )
        charged = {
            label: UsageBucket.objects.filter(tenant_id=ids[label]).aggregate(s=Sum("bytes"))["s"]
            or 0
            for label in labels
        }
        ratios, overs = [], []
        for label in labels:
            s = month_summary(tenant=ids[label])
            ratios.append(s.used / s.allowance)
            overs.append(s.used - s.allowance)
            print(
                f"  {label}: used {s.used / 1e9:.3f} GB of {s.allowance / 1e9:.3f} GB "
                f"({s.used / s.allowance:.3f}), log {in_log[label]} B, charged {charged[label]} B, "
                f"clients {clients.received[label]} B",
                flush=True,
            )
        print(f"  statuses {dict(clients.statuses)}, client errors {dict(clients.errors)}")
        if loop_errors:
            print(f"  loop errors ({len(loop_errors)}): {loop_errors[:3]}")
        target = max(1.25, 1 + largest / QUOTA)
        figure(
            "overspend: used ÷ allowance, max over tenants",
            max(ratios),
            "×",
            target=f"≤ {target:.3f}",
            note=f"{TENANTS} tenants flat out for {served_seconds:.0f} s, "
            f"allowance {QUOTA / 1e9:.2f} GB; worst {max(overs) / 1e6:.0f} MB over",
        )
        figure("overspend: used ÷ allowance, mean over tenants", statistics.mean(ratios), "×")
        diff = sum(in_log[label] for label in labels) - sum(charged.values())
        figure(
            "overspend: bytes in the log (200/206) − bytes charged",
            diff,
            "B",
            target="0",
            note=f"{sum(charged.values())} B charged over a rename and a copytruncate",
        )
        figure(
            "overspend: bytes the clients received − bytes charged",
            sum(clients.received.values()) - sum(charged.values()),
            "B",
            note="for comparison (a client counts only bodies it read completely)",
        )
        if overspend_bound is not None:
            bound = overspend_bound(largest_blob=largest)
            figure(
                "overspend: the bound for these settings (accelerator.gate.overspend_bound)",
                bound / 1e9,
                "GB",
                note=f"= {bound / QUOTA:.2f} × the allowance; lag L = {meter_lag_seconds()} s, "
                f"largest blob {largest / 1e6:.1f} MB",
            )
        return 0 if diff == 0 else 1
    finally:
        stop_loops.set()
        for t in threads:
            t.join(timeout=30)
        for p in reversed(procs):
            p.stop()
        if os.environ.get("BENCH_OVERSPEND_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
