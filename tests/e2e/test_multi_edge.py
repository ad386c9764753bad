"""Two edges, one control plane: the deployment of several edges, with real parts.

Two edges on loopback (own nginx, registry, token helper, ports, logs, run directories), one
PostgreSQL, one Redis broker, ONE Celery beat with EDGES=<east>,<west>, and one real Celery
worker per edge consuming only its queue edge.<name>, as deploy/systemd's
accelerator-edge-worker@.service runs it. Nothing is called in-process: beat enqueues, the
edge's worker ingests its own log and renders its own gate map.

- pulls (skopeo) through both edges are charged once each, exactly, per edge;
- one edge's worker stopped: the other edge's pulls are still counted; the stopped edge's
  lines are counted when its worker is back, nothing lost, nothing twice;
- the dashboard lists both edges;
- a suspension reaches both gates within seconds.
"""

from __future__ import annotations

import json
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db.models import Sum

from ingest.models import EdgeIngest
from quota.models import UsageBucket
from tests.conftest import require
from tests.e2e import harness

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30.0  # generous bound for anything beat drives every second


def _redis_url() -> str:
    url = settings.REDIS_URL
    require(url.startswith("redis://"), "REDIS_URL must name a real Redis (scripts/test.sh)")
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.RedisError as exc:
        require(False, f"Redis at {url} does not answer: {exc}")
    return url


class Cluster:
    """The control plane's beat and one Celery worker per edge, as subprocesses."""

    def __init__(self, base: Path, edges: dict[str, harness.Edge], broker: str) -> None:
        self.base = base
        self.edges = edges
        self.broker = broker
        self.procs: dict[str, harness.Proc] = {}

    def _env(self) -> dict[str, str]:
        var = self.base / "var"
        var.mkdir(parents=True, exist_ok=True)
        return {
            "DJANGO_DEBUG": "true",
            "DATABASE_URL": harness.database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": self.broker,
            "VAR_DIR": str(var),
            "EDGES": ",".join(self.edges),
            "INGEST_INTERVAL_SECONDS": "1",
            "EDGE_GATE_SYNC_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
        }

    def _wait_log(self, proc: harness.Proc, marker: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while marker not in proc.log_tail(10**6):
            assert proc.popen.poll() is None, f"{proc.name} exited:\n{proc.log_tail()}"
            assert time.monotonic() < deadline, f"{proc.name} not ready:\n{proc.log_tail()}"
            time.sleep(0.2)

    def start_beat(self) -> harness.Proc:
        proc = harness.Proc.start(
            "beat",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "--loglevel=info",
                "--schedule",
                str(self.base / "beat-schedule"),
            ],
            log=self.base / "beat.log",
            env=self._env(),
        )
        self.procs["beat"] = proc
        self._wait_log(proc, "beat: Starting")
        return proc

    def start_worker(self, name: str) -> harness.Proc:
        """The edge's worker, configured like accelerator-edge-worker@.service."""
        edge = self.edges[name]
        env = {
            **self._env(),
            "EDGE_NAME": name,
            "EDGE_RUN_DIR": str(edge.run_dir),
            "EDGE_ACCESS_LOG": str(edge.access_log),
        }
        proc = harness.Proc.start(
            f"worker-{name}",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                f"--queues=edge.{name}",
                f"--hostname={name}@%h",
                "--concurrency=2",
                "--loglevel=info",
                "--without-gossip",
                "--without-mingle",
            ],
            log=self.base / f"worker-{name}.log",
            env=env,
        )
        self.procs[name] = proc
        return proc

    def wait_ready(self, name: str) -> None:
        self._wait_log(self.procs[name], "ready.")

    def stop(self, key: str) -> None:
        proc = self.procs.pop(key, None)
        if proc is not None:
            # Warm shutdown: a run in progress finishes or rolls back; nothing is half-counted.
            proc.stop(signal.SIGTERM, timeout=30)

    def stop_all(self) -> None:
        for key in list(self.procs):
            self.stop(key)


@pytest.fixture
def two_edges(upstream) -> Iterator[dict[str, harness.Edge]]:
    require(harness.which("nginx") is not None, "nginx is not installed")
    require(harness.which("docker-registry") is not None, "docker-registry is not installed")
    tag = secrets.token_hex(3)
    edges: dict[str, harness.Edge] = {}
    dirs = []
    try:
        for side in ("east", "west"):
            name = f"{side}-{tag}"
            workdir = harness.worker_readable_dir(f"e2e-{side}-")
            dirs.append(workdir)
            edges[name] = harness.start_edge(
                workdir,
                upstream_url=upstream.registry.url,
                name=name,
                mirror_domain=settings.MIRROR_DOMAIN,
            )
        yield edges
    finally:
        for e in edges.values():
            e.stop()
        import shutil

        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def cluster(two_edges, tmp_path) -> Iterator[Cluster]:
    broker = _redis_url()
    c = Cluster(tmp_path, two_edges, broker)
    try:
        yield c
    finally:
        c.stop_all()
        # Queues of this run (and the control plane's, which no worker here consumes).
        client = redis.Redis.from_url(broker)
        client.delete("celery", *(f"edge.{name}" for name in two_edges))


def _usage(tenant, edge: str) -> tuple[int, int]:
    agg = UsageBucket.objects.filter(tenant=tenant, edge=edge).aggregate(
        b=Sum("bytes"), r=Sum("requests")
    )
    return agg["b"] or 0, agg["r"] or 0


def _expected(edge: harness.Edge, label: str) -> tuple[int, int]:
    """What the edge's own log says the tenant must be charged: body bytes of 200/206."""
    lines = [x for x in edge.log_lines() if x["tenant"] == label]
    charged = sum(x["body_bytes_sent"] for x in lines if x["status"] in (200, 206))
    return charged, len(lines)


def _wait(predicate, what: str, timeout: float = WAIT, logs: str = "") -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{what} not within {timeout}s\n{logs}"
        time.sleep(0.2)
    return time.monotonic() - started


def _ingestion_runs(edge: str, n: int, logs) -> None:
    """Wait until the edge's worker has finished `n` more ingestion runs (the event that makes
    "nothing changed" mean something, however fast or slow the machine)."""
    for _ in range(n):
        before = EdgeIngest.objects.filter(edge=edge).values_list("last_run_at", flat=True).first()
        _wait(
            lambda before=before: (
                EdgeIngest.objects.filter(edge=edge).values_list("last_run_at", flat=True).first()
                != before
            ),
            f"another ingestion run on {edge}",
            logs=logs(),
        )


def _queued_ingestion_runs(cluster: Cluster, edge: str) -> int:
    """Ingestion runs beat sent to the edge's queue that no worker has taken yet."""
    messages = redis.Redis.from_url(cluster.broker).lrange(f"edge.{edge}", 0, -1)
    return sum(json.loads(m)["headers"]["task"] == "ingest.tasks.ingest_edge_log" for m in messages)


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (sizing figures for the README)."""
    pids, total = {pid} | harness.child_pids(pid), 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _status(edge: harness.Edge, label: str) -> int:
    return edge.get(label, "/v2/library/accel-small/manifests/latest", method="HEAD").status


@pytest.mark.django_db(transaction=True)
def test_two_edges_one_broker_each_counted_once_suspension_reaches_both_one_down(
    two_edges, cluster, upstream, skopeo, hosts, django_user_model, client, staff, settings
):
    from allauth.account.models import EmailAddress

    from accelerator.services import tenant_suspend

    (east_name, east), (west_name, west) = two_edges.items()
    settings.EDGES = list(two_edges)  # this process renders the dashboard

    # Start everything at once: the workers take seconds to boot, in parallel.
    cluster.start_worker(east_name)
    cluster.start_worker(west_name)
    cluster.start_beat()
    cluster.wait_ready(east_name)
    cluster.wait_ready(west_name)

    email = f"multi-{secrets.token_hex(3)}@example.com"
    user = django_user_model.objects.create_user(email=email, password="e2e-pass-12345")
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    from accelerator.services import tenant_start

    tenant = tenant_start(user=user)
    label = tenant.label
    hosts.add(east.host(label, port=False))  # both edges answer for the same host name

    # Each edge's worker renders the new tenant into its own gate (beat, every second).
    logs = lambda: "\n".join(p.log_tail(3000) for p in cluster.procs.values())  # noqa: E731
    for edge in (east, west):
        _wait(lambda edge=edge: _status(edge, label) == 200, f"{edge.name} gate", logs=logs())

    def pull(edge: harness.Edge) -> None:
        item = upstream.images["small"]
        skopeo.mirror_docker_io(edge.host(label))
        result, dest = skopeo.copy_to_dir(f"docker://{item.docker_ref}", f"pull-{edge.name}")
        assert result.returncode == 0, result.stderr
        harness.verify_dir_copy(dest, item.image)

    # 1. A pull through each edge is charged once, on its edge, exactly.
    pull(east)
    pull(west)
    for edge in (east, west):
        want = _expected(edge, label)
        assert want[0] > sum(b.size for b in upstream.images["small"].image.blobs)
        took = _wait(
            lambda edge=edge, want=want: _usage(tenant, edge.name) == want,
            f"{edge.name} usage {want}",
            logs=logs(),
        )
        print(f"{edge.name}: charged {want[0]} bytes in {want[1]} requests, {took:.1f}s")
    edge_procs = [east.nginx, east.registry.proc, east.token]
    print(
        f"RSS: edge worker {_tree_rss_mb(cluster.procs[east_name].pid):.0f} MB, beat "
        f"{_tree_rss_mb(cluster.procs['beat'].pid):.0f} MB, nginx+registry+token helper "
        f"{sum(_tree_rss_mb(p.pid) for p in edge_procs):.0f} MB"
    )
    # Three more ingestion runs on each edge change nothing.
    for edge in (east, west):
        _ingestion_runs(edge.name, 3, logs)
    assert _usage(tenant, east.name) == _expected(east, label)
    assert _usage(tenant, west.name) == _expected(west, label)

    # 2. West's worker stops: east goes on counting; west's new lines wait for its worker.
    west_before = _usage(tenant, west.name)
    cluster.stop(west_name)
    pull(east)
    pull(west)  # the west gate keeps serving from its last map
    east_want = _expected(east, label)
    _wait(
        lambda: _usage(tenant, east.name) == east_want, "east usage while west is down", logs=logs()
    )
    # Two of west's runs came due (beat queued them) while east ran twice more: west's
    # lines stay uncounted until its own worker is back.
    _wait(lambda: _queued_ingestion_runs(cluster, west.name) >= 2, "west's runs", logs=logs())
    _ingestion_runs(east.name, 2, logs)
    assert _usage(tenant, west.name) == west_before, "west counted without its worker"
    west_want = _expected(west, label)
    assert west_want[0] > west_before[0]

    # The dashboard shows both edges, west's last run older than east's.
    client.force_login(staff)
    page = client.get("/staff/")
    health = page.context["ingest_health"]
    health = {e["row"].edge: e["row"] for e in (health() if callable(health) else health)}
    table = page.content.decode().split('data-testid="ingest-health"', 1)[1].split("</table>")[0]
    assert east.name in table and west.name in table
    assert set(health) >= {east.name, west.name}
    assert health[east.name].lines_total > 0 and health[west.name].lines_total > 0
    assert health[west.name].last_run_at < health[east.name].last_run_at

    # West's worker is back: its lines are counted once, nothing lost.
    cluster.start_worker(west_name)
    cluster.wait_ready(west_name)
    _wait(lambda: _usage(tenant, west.name) == west_want, "west catches up", logs=logs())
    _ingestion_runs(west.name, 2, logs)
    assert _usage(tenant, west.name) == west_want
    assert _usage(tenant, east.name) == east_want

    # 3. A suspension reaches both gates, through beat and each edge's own worker.
    tenant_suspend(tenant=tenant, reason="e2e: multi-edge")
    for edge in (east, west):
        took = _wait(
            lambda edge=edge: _status(edge, label) == 403,
            f"{edge.name} refuses",
            timeout=15,
            logs=logs(),
        )
        print(f"{edge.name}: suspension served {took:.1f}s after it was saved")
    body = east.get(label, "/v2/library/accel-small/manifests/latest").json()
    assert body["errors"][0]["code"] == "DENIED"
    # Every task ran on its own edge's worker: none was refused as another edge's.
    assert "refused by the worker" not in logs()
