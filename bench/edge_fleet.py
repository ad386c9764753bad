"""bench/edge_fleet: cold pulls at fleet scale through the edge's sliced blob cache.

Starts its own parts on 127.0.0.1: an upstream like Docker Hub (bearer tokens, 307 to a blob
store) whose blob store sends through one throttled link shared by all its connections (so a
fill takes seconds, as in real life), and edges rendered from deploy/nginx. Upstream reads are
the blob store's own byte count. No database: gate maps are written as `edge_sync` does.

Figures (ratios within this run):
- 10 concurrent cold clients of one blob: upstream bytes ÷ blob size; the last client's time to
  first byte ÷ one slice's fill time; wall clock of all 10 ÷ one client alone (another blob of
  the same size, same link); every copy checked against its digest;
- a resumed download (Range: bytes=N-) of the cached blob: upstream bytes read;
- the digest check's cost: an unthrottled cold fill through the check ÷ the same edge config
  without it (nginx's verify upstream pointed at the fetch server), and the check's CPU time;
- two child edges and a parent, the same blob pulled cold through both children at once:
  upstream bytes ÷ blob size.

Environment: BENCH_FLEET_BLOB_MB=256, BENCH_FLEET_LINK_MB=32 (the link, MB/s),
BENCH_FLEET_SLICE=8m, BENCH_FLEET_KEEP=0.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import figure  # noqa: E402
from edge import render as edge_config  # noqa: E402
from tests.e2e import harness  # noqa: E402
from tests.e2e.upstream_auth import SharedLink, start_auth_upstream  # noqa: E402

MB = 1024 * 1024
BLOB_MB = int(os.environ.get("BENCH_FLEET_BLOB_MB", "256"))
LINK = int(float(os.environ.get("BENCH_FLEET_LINK_MB", "32")) * MB)
SLICE = os.environ.get("BENCH_FLEET_SLICE", "8m")
KEEP = os.environ.get("BENCH_FLEET_KEEP", "0") == "1"
LABEL = "benchtenant1"
DOMAIN = "m.localhost"


def image(note: str, mb: int = BLOB_MB) -> harness.Image:
    return harness.make_image(files={"data.bin": os.urandom(mb * MB)}, note=note)


def download(edge: harness.Edge, path: str, headers: str = "") -> tuple[float, float, str]:
    """(seconds to the first byte, seconds to the last, sha256 of the body), as curl measures
    them; the body is hashed by sha256sum in its own process, off this interpreter's lock."""
    extra = f"-H {shlex.quote(headers)}" if headers else ""
    url = shlex.quote(f"http://127.0.0.1:{edge.port}{path}")
    command = (
        f"set -o pipefail; curl -sSf -H {shlex.quote('Host: ' + edge.host(LABEL))} {extra} "
        f"-w '%{{stderr}}%{{time_starttransfer}} %{{time_total}}' {url} | sha256sum"
    )
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=900, check=True
    )
    first, total = (float(x.replace(",", ".")) for x in done.stderr.split()[-2:])
    return first, total, "sha256:" + done.stdout.split()[0]


def main() -> int:
    for tool in ("docker-registry", "nginx", "openssl"):
        if not harness.which(tool):
            print(f"bench/edge_fleet: {tool} is not installed; skipped")
            return 0
    work = harness.worker_readable_dir("bench-fleet-")
    stops: list = []
    try:
        t0 = time.monotonic()
        images = {name: image(name) for name in ("alone", "crowd", "checked", "unchecked", "fleet")}
        upstream = start_auth_upstream(work / "upstream", images)
        stops.append(upstream)
        store = upstream.store
        slice_bytes = edge_config.slice_bytes(SLICE)
        edge = harness.start_edge(
            work / "edge",
            upstream_url=upstream.url,
            name="bench",
            mirror_domain=DOMAIN,
            slice_size=SLICE,
        )
        stops.append(edge)
        edge.write_gate_map({LABEL: "active"})
        print(
            f"bench/edge_fleet: blobs of {BLOB_MB} MB, link {LINK / MB:.0f} MB/s shared, "
            f"slices of {SLICE}; set up in {time.monotonic() - t0:.1f} s",
            flush=True,
        )

        def blob_path(name: str) -> tuple[str, harness.Blob]:
            layer = images[name].layers[0]
            return f"/v2/library/{name}/blobs/{layer.digest}", layer

        # --- 10 concurrent cold clients -----------------------------------------------------
        store.link = SharedLink(LINK)
        path, layer = blob_path("alone")
        alone_first, alone_total, digest = download(edge, path)
        assert digest == layer.digest, "alone: wrong bytes"
        slice_fill = slice_bytes / LINK
        path, layer = blob_path("crowd")
        start = time.perf_counter()
        with ThreadPoolExecutor(10) as pool:
            runs = list(pool.map(lambda _: download(edge, path), range(10)))
        wall = time.perf_counter() - start
        exact = sum(d == layer.digest for _, _, d in runs)
        read = store.reads(layer.digest)
        last_first = max(r[0] for r in runs)
        print(
            f"  one client alone: first byte {alone_first:.3f} s, whole {alone_total:.2f} s; "
            f"10 at once: wall {wall:.2f} s, first bytes median "
            f"{statistics.median(r[0] for r in runs):.3f} s, last {last_first:.3f} s; "
            f"{exact}/10 exact; upstream read {read:.4f} x the blob"
        )
        figure(
            "10 cold clients: upstream bytes ÷ blob size",
            read,
            "ratio",
            "<= 1 + 1 slice",
            f"{exact} of 10 copies exact",
        )
        figure(
            "10 cold clients: last time to first byte ÷ one slice's fill",
            last_first / slice_fill,
            "ratio",
            "<= 1.5",
            f"{last_first:.3f} s; a {SLICE} slice fills in {slice_fill:.3f} s",
        )
        figure(
            "10 cold clients: wall clock ÷ one client alone",
            wall / alone_total,
            "ratio",
            "<= 1.2",
            f"{wall:.2f} s vs {alone_total:.2f} s",
        )

        # --- a resumed download of the cached blob ------------------------------------------
        before = store.bytes_out[layer.digest.split(":")[1]]
        offset = layer.size // 3
        first, total, _ = download(edge, path, f"Range: bytes={offset}-")
        after = store.bytes_out[layer.digest.split(":")[1]]
        print(
            f"  resumed download from byte {offset}: {total:.3f} s, upstream bytes {after - before}"
        )
        figure(
            "resumed download (Range) of a cached blob: upstream bytes",
            after - before,
            "bytes",
            "0",
            f"{(layer.size - offset) / MB:.0f} MB served in {total:.2f} s",
        )

        # --- the digest check's cost --------------------------------------------------------
        store.link = None
        # The same config with its verify upstream pointed at its fetch server: no check.
        fetch = f"127.0.0.1:{harness.free_port()}"
        nocheck = harness.start_sibling_edge(
            edge,
            work / "nocheck",
            gate={LABEL: "active"},
            slice_size=SLICE,
            fetch_listen=fetch,
            verify_listen=fetch,
        )
        stops.append(nocheck)
        path_c, layer_c = blob_path("checked")
        path_u, layer_u = blob_path("unchecked")
        cpu_before = _cpu_seconds(edge.verify.pid) if edge.verify else 0.0
        _, with_check, d1 = download(edge, path_c)
        cpu = (_cpu_seconds(edge.verify.pid) if edge.verify else 0.0) - cpu_before
        _, without_check, d2 = download(nocheck, path_u)
        assert d1 == layer_c.digest and d2 == layer_u.digest
        print(
            f"  unthrottled cold fill: {with_check:.2f} s with the digest check, "
            f"{without_check:.2f} s without; the check's process used {cpu:.2f} CPU s"
        )
        figure(
            "cold fill speed, with the digest check ÷ without",
            without_check / with_check,
            "ratio",
            "",
            f"{BLOB_MB / with_check:.0f} vs {BLOB_MB / without_check:.0f} MB/s, "
            f"{cpu:.2f} CPU s for {BLOB_MB} MB",
        )

        # --- two children and a parent ------------------------------------------------------
        store.link = SharedLink(LINK)
        secret = secrets.token_urlsafe(32)
        child_listen = f"127.0.0.1:{harness.free_port()}"
        parent = harness.start_edge(
            work / "parent",
            upstream_url=upstream.url,
            name="parent",
            mirror_domain=DOMAIN,
            slice_size=SLICE,
            child_listen=child_listen,
            parent_secret=secret,
        )
        stops.append(parent)
        children = []
        for i in (1, 2):
            child = harness.start_edge(
                work / f"child{i}",
                upstream_url=upstream.url,
                name=f"child{i}",
                mirror_domain=DOMAIN,
                slice_size=SLICE,
                parent_url=f"http://{child_listen}",
                parent_secret=secret,
            )
            stops.append(child)
            child.write_gate_map({LABEL: "active"})
            children.append(child)
        path, layer = blob_path("fleet")
        start = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            runs = list(pool.map(lambda i: download(children[i % 2], path), range(4)))
        wall = time.perf_counter() - start
        exact = sum(d == layer.digest for _, _, d in runs)
        read = store.reads(layer.digest)
        print(
            f"  2 children x 2 clients, cold: {wall:.2f} s, {exact}/4 exact, "
            f"upstream read {read:.4f} x"
        )
        figure(
            "parent tier, 2 children pulling cold at once: upstream bytes ÷ blob size",
            read,
            "ratio",
            "1",
            f"{exact} of 4 copies exact, {wall:.2f} s",
        )
        return 0
    finally:
        for part in reversed(stops):
            part.stop()
        if not KEEP:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
