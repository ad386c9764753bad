"""bench/edge: the edge's data-plane figures, each a ratio measured in one run.

Starts its own parts on 127.0.0.1 (kernel-assigned ports), from the project's templates:
an upstream Distribution registry (the stand-in for Docker Hub) filled with generated images,
the edge's pull-through registry, and nginx rendered from deploy/nginx. No database: the gate
map holds one bench tenant, written the way `manage.py edge_sync` writes it.

Figures:
- warm blob, raw stream (curl): tenant path through nginx ÷ the bare pull-through registry,
  with the configured proxy buffer and with nginx's one-page default (4k), to show the sizing;
- warm pull with skopeo (manifest + all blobs): tenant path ÷ bare registry (speed ratio);
- cold pull with skopeo: tenant path ÷ bare registry, each pulling a different never-seen image;
- gate cost per request: a refusal answered by the gate alone, and the extra latency of the
  tenant path over the bare registry for a manifest HEAD, with 1 and with 100,000 tenants in
  the map (and the reload time of such a map);
- upstream reads per blob for 1 and for 10 concurrent cold pulls, counted in the upstream
  registry's own access log.

Environment (optional): BENCH_EDGE_LAYER_MB=100 (warm/cold layer size), BENCH_EDGE_REPEAT=5,
BENCH_EDGE_KEEP=0 (1 keeps the work directory).
Prints `FIGURE {json}` lines that bench/run.py collects into its table.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import figure  # noqa: E402
from edge import render as edge_config  # noqa: E402
from tests.e2e import harness  # noqa: E402

LAYER_MB = int(os.environ.get("BENCH_EDGE_LAYER_MB", "100"))
REPEAT = int(os.environ.get("BENCH_EDGE_REPEAT", "5"))
KEEP = os.environ.get("BENCH_EDGE_KEEP", "0") == "1"
LABEL = "benchtenant1"
DOMAIN = "m.localhost"
READS_LAYER_MB = 20


def random_image(mb: int, note: str) -> harness.Image:
    # Random bytes do not compress: the layer on the wire is as large as asked.
    return harness.make_image(files={"data.bin": os.urandom(mb * 1024 * 1024)}, note=note)


def curl_speed(url: str, host: str | None = None, secret: str | None = None) -> float:
    """Bytes per second of one download to /dev/null, as curl measures it; ``secret``: the
    edge's internal secret, without which its fetch server answers nothing."""
    cmd = ["curl", "-sf", "-o", "/dev/null", "-w", "%{speed_download}", url]
    if host:
        cmd += ["-H", f"Host: {host}"]
    if secret:
        cmd += ["-H", f"X-Edge-Secret: {secret}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    return float(out.stdout.replace(",", "."))


def median_speeds(
    urls: dict[str, tuple[str, str | None] | tuple[str, str | None, str]], repeat: int
) -> dict[str, float]:
    """Median speed per target, the targets interleaved so drift hits them all alike."""
    speeds: dict[str, list[float]] = {k: [] for k in urls}
    for _ in range(repeat):
        for key, target in urls.items():
            speeds[key].append(curl_speed(*target))
    return {k: statistics.median(v) for k, v in speeds.items()}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def latencies(targets: dict[str, tuple[int, str, str, str]], n: int) -> dict[str, float]:
    """Median seconds per request for each target, one keep-alive connection each, the
    targets interleaved request by request so that machine noise hits them alike."""
    import http.client

    conns = {
        k: http.client.HTTPConnection("127.0.0.1", t[0], timeout=30) for k, t in targets.items()
    }
    samples: dict[str, list[float]] = {k: [] for k in targets}
    for _ in range(n):
        for key, (_port, host, method, path) in targets.items():
            start = time.perf_counter()
            conns[key].request(method, path, headers={"Host": host, "Accept": harness.MT_MANIFEST})
            conns[key].getresponse().read()
            samples[key].append(time.perf_counter() - start)
    for conn in conns.values():
        conn.close()
    return {k: statistics.median(v) for k, v in samples.items()}


# The edge's template before registries were routed (issue 15): the baseline of the routing
# figures. Override with BENCH_EDGE_BASELINE_REF (any git revision).
BASELINE_REF = os.environ.get("BENCH_EDGE_BASELINE_REF", "59fe2f8")


def routing_figures(edge, work: Path, upstream, host: str, manifest: str, n: int) -> None:
    """Manifest GET latency through the edge: Docker Hub's plain path, ?ns=ghcr.io and the
    /v2/ghcr.io/ prefix, each ÷ the same GET through an nginx rendered from the template
    without routing (same registry, same run, requests interleaved)."""
    old = subprocess.run(
        ["git", "show", f"{BASELINE_REF}:deploy/nginx/edge.conf.template"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if old.returncode != 0:
        print(f"  routing figures skipped: no template at {BASELINE_REF} ({old.stderr.strip()})")
        return
    params = replace(
        harness.edge_params(
            work / "norouting", upstream_url=upstream.url, name="bench", mirror_domain=DOMAIN
        ),
        registry_listen=edge.params.registry_listen,
        token_listen=edge.params.token_listen,
        tenant_head_rate="100000r/s",
        tenant_head_burst=100000,
    )
    run = params.run_dir
    for sub in ("logs", "tmp"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    params.cache_dir.mkdir(parents=True, exist_ok=True)
    (run / "gate.map").write_text(edge_config.gate_map({LABEL: "active"})[0])
    # A setting the old template had and the current one does not (the cache lock's seconds,
    # gone with shared fills): its old default.
    old_template = old.stdout.replace("@@CACHE_LOCK_SECONDS@@", "3600")
    (run / "nginx.conf").write_text(edge_config.nginx_conf(old_template, params))
    nginx = harness.Proc.start("nginx-norouting", harness.nginx_cmd(run), log=run / "nginx.out")
    try:
        harness.wait_port(int(params.listen.rsplit(":", 1)[1]), proc=nginx)
        ghcr = edge.upstream_registries["ghcr.io"]
        digest = manifest.rsplit("/", 1)[1]
        targets = {
            "baseline": (int(params.listen.rsplit(":", 1)[1]), host, "GET", manifest),
            "docker.io": (edge.port, host, "GET", manifest),
            "ns": (edge.port, host, "GET", f"{manifest}?ns=ghcr.io"),
            "prefix": (edge.port, host, "GET", f"/v2/ghcr.io/library/warm/manifests/{digest}"),
            "bare docker.io": (edge.registry.port, "127.0.0.1", "GET", manifest),
            "bare ghcr.io": (ghcr.port, "127.0.0.1", "GET", manifest),
        }
        latencies(targets, 20)  # warm: ghcr.io's registry stores the manifest on first GET
        got = latencies(targets, n)
    finally:
        nginx.stop(signal.SIGQUIT)
    print("  manifest GET: " + ", ".join(f"{k} {v * 1e6:.0f} µs" for k, v in got.items()))
    for key, label in (
        ("docker.io", "Docker Hub, plain path"),
        ("ns", "?ns=ghcr.io"),
        ("prefix", "/v2/ghcr.io/ prefix"),
    ):
        figure(
            f"manifest latency with routing ÷ without ({label})",
            got[key] / got["baseline"],
            "×",
            "<= 1.05",
            f"{got[key] * 1e6:.0f} vs {got['baseline'] * 1e6:.0f} µs, by digest, median of {n}",
        )


def main() -> int:
    for tool in ("docker-registry", "nginx", "curl"):
        if not harness.which(tool):
            print(f"bench/edge: {tool} is not installed; skipped")
            return 0
    work = harness.worker_readable_dir("bench-edge-")
    procs: list = []
    hosts = harness.HostsFile() if harness.HostsFile.writable() else None
    skopeo = harness.Skopeo() if harness.which("skopeo") else None
    try:
        t0 = time.monotonic()
        upstream = harness.start_registry(work / "upstream")
        procs.append(upstream)
        images = {
            "warm": random_image(LAYER_MB, "warm"),
            "cold-tenant": random_image(LAYER_MB, "cold-tenant"),
            "cold-bare": random_image(LAYER_MB, "cold-bare"),
            "reads-1": random_image(READS_LAYER_MB, "reads-1"),
            "reads-10": random_image(READS_LAYER_MB, "reads-10"),
            "join": random_image(LAYER_MB, "join"),
        }
        for name, image in images.items():
            harness.push_image(upstream.port, f"library/{name}", "latest", image)
        # The gate-cost loop sends 500 HEADs as fast as it can: a HEAD rate that never refuses
        # (the limit is still evaluated on every request, so its cost is in the figures).
        edge = harness.start_edge(
            work,
            upstream_url=upstream.url,
            name="bench",
            mirror_domain=DOMAIN,
            tenant_head_rate="100000r/s",
            tenant_head_burst=100000,
            # A second registry (the routing figures): its own pull-through registry, the same
            # stand-in upstream behind it.
            upstreams={"ghcr.io": upstream.url},
            slice_size="8m",  # the default (the test harness uses small slices)
        )
        procs.append(edge)
        edge.write_gate_map({LABEL: "active"})
        host = edge.host(LABEL)
        print(
            f"bench/edge: layers of {LAYER_MB} MB, {REPEAT} runs each (median); set up in "
            f"{time.monotonic() - t0:.1f} s",
            flush=True,
        )

        # A second nginx from the same template with nginx's default one-page buffer, to
        # measure the relay of uncached streams (the fetch path of cache misses).
        small = harness.start_sibling_edge(
            edge, work / "buf4k", gate={LABEL: "active"}, proxy_buffer_size="4k"
        )
        procs.append(small)
        small_params = small.params

        # --- warm raw stream ---------------------------------------------------------------
        warm = images["warm"]
        blob_path = f"/v2/library/warm/blobs/{warm.layers[0].digest}"
        tenant_url = f"http://127.0.0.1:{edge.port}{blob_path}"
        bare_url = f"http://127.0.0.1:{edge.registry.port}{blob_path}"
        curl_speed(tenant_url, host)  # fills the edge's blob cache
        curl_speed(bare_url)  # fills the pull-through registry's own storage
        speeds = median_speeds({"bare": (bare_url, None), "tenant": (tenant_url, host)}, REPEAT)
        for key, value in speeds.items():
            print(f"  warm raw stream {key:<9} {value / 1e9:6.2f} GB/s")
        figure(
            "warm raw stream, tenant ÷ bare registry",
            speeds["tenant"] / speeds["bare"],
            "ratio",
            ">= 1.0",
            f"{speeds['tenant'] / 1e9:.2f} vs {speeds['bare'] / 1e9:.2f} GB/s (edge cache hit)",
        )
        relay = median_speeds(
            {
                "upstream": (f"{upstream.url}{blob_path}", None),
                "relay": (
                    f"http://{edge.params.fetch_listen}{blob_path}",
                    None,
                    edge.params.internal_secret,
                ),
                "relay4k": (
                    f"http://{small_params.fetch_listen}{blob_path}",
                    None,
                    small_params.internal_secret,
                ),
            },
            REPEAT,
        )
        for key, value in relay.items():
            print(f"  uncached relay {key:<9} {value / 1e9:6.2f} GB/s")
        figure(
            f"uncached relay, {edge.params.proxy_buffer_size} buffer ÷ direct",
            relay["relay"] / relay["upstream"],
            "ratio",
            "",
            f"{relay['relay'] / 1e9:.2f} vs {relay['upstream'] / 1e9:.2f} GB/s",
        )
        figure(
            "uncached relay, 4k buffer ÷ direct",
            relay["relay4k"] / relay["upstream"],
            "ratio",
            "",
            f"{relay['relay4k'] / 1e9:.2f} GB/s with nginx's one-page default",
        )

        # --- skopeo pulls --------------------------------------------------------------------
        if skopeo and hosts:
            hosts.add(edge.host(LABEL, port=False))

            def pull(ref: str, name: str) -> None:
                result, _ = skopeo.copy_to_dir(ref, name)
                if result.returncode != 0:
                    raise RuntimeError(result.stderr)

            tenant_ref = f"docker://{host}/library/warm:latest"
            bare_ref = f"docker://127.0.0.1:{edge.registry.port}/library/warm:latest"
            pull(tenant_ref, "warmup")
            t_tenant, t_bare = [], []
            for _ in range(max(3, REPEAT)):
                t_bare.append(timed(lambda: pull(bare_ref, "w")))
                t_tenant.append(timed(lambda: pull(tenant_ref, "w")))
            mt, mb = statistics.median(t_tenant), statistics.median(t_bare)
            print(f"  warm skopeo pull tenant {mt:.3f} s, bare {mb:.3f} s")
            figure(
                "warm skopeo pull, tenant ÷ bare registry (speed)",
                mb / mt,
                "ratio",
                ">= 0.95",
                f"{mt:.2f} s vs {mb:.2f} s for {LAYER_MB} MB",
            )
            ct = timed(lambda: pull(f"docker://{host}/library/cold-tenant:latest", "c1"))
            cb = timed(
                lambda: pull(
                    f"docker://127.0.0.1:{edge.registry.port}/library/cold-bare:latest", "c2"
                )
            )
            print(f"  cold skopeo pull tenant {ct:.3f} s, bare {cb:.3f} s")
            figure(
                "cold skopeo pull, tenant ÷ bare registry (speed)",
                cb / ct,
                "ratio",
                "",
                f"{ct:.2f} s vs {cb:.2f} s for {LAYER_MB} MB from the upstream",
            )
        else:
            print("  skopeo pulls skipped: skopeo missing or /etc/hosts not writable")

        # --- gate cost per request -----------------------------------------------------------
        n = 500
        # By digest: a tag HEAD makes Distribution ask the upstream every time (~ms), which
        # would hide the edge's own cost.
        manifest = f"/v2/library/warm/manifests/{warm.digest}"

        def gate_costs() -> dict[str, float]:
            return latencies(
                {
                    "refused": (edge.port, edge.host("nosuchtenant"), "GET", "/v2/"),
                    "tenant": (edge.port, host, "HEAD", manifest),
                    "bare": (edge.registry.port, "127.0.0.1", "HEAD", manifest),
                },
                n,
            )

        small = gate_costs()
        print(
            "  per request (1 tenant): "
            + ", ".join(f"{k} {v * 1e6:.0f} µs" for k, v in small.items())
        )
        figure("gate refusal, per request", small["refused"] * 1e6, "µs", "", "nginx alone")
        figure(
            "tenant path overhead per manifest HEAD (1 tenant)",
            (small["tenant"] - small["bare"]) * 1e6,
            "µs",
            "",
            f"{small['tenant'] * 1e6:.0f} vs {small['bare'] * 1e6:.0f} µs, by digest",
        )
        big = {f"t{i:011d}": "active" for i in range(100_000)} | {LABEL: "active"}
        reload_s = timed(lambda: edge.write_gate_map(big))
        large = gate_costs()
        print(
            "  per request (100,000 tenants): "
            + ", ".join(f"{k} {v * 1e6:.0f} µs" for k, v in large.items())
        )
        figure(
            "tenant path overhead per manifest HEAD (100,000 tenants)",
            (large["tenant"] - large["bare"]) * 1e6,
            "µs",
            "",
            f"refusal {large['refused'] * 1e6:.0f} µs",
        )
        figure("gate map reload, 100,000 tenants", reload_s, "s", "", "SIGHUP until new workers")

        # --- the routing's cost on manifest latency -----------------------------------------
        routing_figures(edge, work, upstream, host, f"/v2/library/warm/manifests/{warm.digest}", n)

        # --- upstream reads per blob -------------------------------------------------------
        def cold_pulls(name: str, clients: int) -> tuple[float, int]:
            image = images[name]
            paths = [f"/v2/library/{name}/blobs/{b.digest}" for b in image.blobs]

            def one(_):
                ok = 0
                for path in paths:
                    resp = harness.request(edge.port, "GET", path, host=host, timeout=300)
                    ok += resp.status == 200 and harness.sha256_digest(resp.body) in path
                return ok == len(paths)

            harness.request(edge.port, "GET", f"/v2/library/{name}/manifests/latest", host=host)
            with ThreadPoolExecutor(clients) as pool:
                good = sum(pool.map(one, range(clients)))
            time.sleep(1.0)  # the registry writes its access log line after the response
            layer = image.layers[0]
            # In blob sizes: the cache fills in slices, one upstream request each.
            return upstream.blob_bytes(layer.digest) / layer.size, clients - good

        # --- clients joining a fill in progress --------------------------------------------
        join = images["join"].layers[0]
        join_path = f"/v2/library/join/blobs/{join.digest}"

        def ttfb_and_total(delay: float) -> tuple[float, float]:
            time.sleep(delay)
            start = time.perf_counter()
            with socket.create_connection(("127.0.0.1", edge.port), 60) as conn:
                head = f"GET {join_path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                conn.sendall(head.encode())
                first = conn.recv(65536)
                ttfb = time.perf_counter() - start
                got = len(first)
                while chunk := conn.recv(1 << 20):
                    got += len(chunk)
            assert got > join.size, "short download"
            return ttfb, time.perf_counter() - start

        with ThreadPoolExecutor(6) as pool:
            runs = list(pool.map(ttfb_and_total, [0.0] + [0.05] * 5))
        fill_ttfb, fill_total = runs[0]
        joiners = [r[0] for r in runs[1:]]
        print(
            f"  join a fill: first client ttfb {fill_ttfb * 1000:.0f} ms, whole blob "
            f"{fill_total * 1000:.0f} ms; 5 joiners' ttfb median "
            f"{statistics.median(joiners) * 1000:.0f} ms, max {max(joiners) * 1000:.0f} ms"
        )
        figure(
            "time to first byte, clients joining a fill (median)",
            statistics.median(joiners) * 1000,
            "ms",
            "",
            f"max {max(joiners) * 1000:.0f} ms; the fill took {fill_total * 1000:.0f} ms "
            f"for {LAYER_MB} MB; joiners stream the fill in flight as it arrives",
        )

        for name, clients in (("reads-1", 1), ("reads-10", 10)):
            reads, failed = cold_pulls(name, clients)
            print(
                f"  cold blob, {clients} concurrent client(s): {reads:.3f} upstream reads, "
                f"{failed} failed downloads"
            )
            figure(
                f"upstream reads per cold blob, {clients} concurrent",
                reads,
                "reads",
                "1",
                f"{failed} of {clients} clients failed",
            )
        return 0
    finally:
        for proc in reversed(procs):
            proc.stop()
        if hosts:
            hosts.remove_all()
        if skopeo:
            skopeo.cleanup()
        if not KEEP:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    sys.exit(main())
