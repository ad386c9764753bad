"""bench/ingest: access-log ingestion, end to end into PostgreSQL, against a bare read.

On a generated log (BENCH_INGEST_LINES lines, default 2,000,000, over BENCH_INGEST_TENANTS
tenants, default 10,000, plus some unknown labels), in one run:
1. the floor: a bare line-by-line read of the file (``for line in f``);
2. parse + aggregate only, in this process (ingest.parser.read_batch, no database);
3. end to end: ingest.services.ingest_edge — the meter (read, parse, aggregate, resolve
   labels, commit usage and position per batch), without the ledger's enforcement, then the
   status page's pass over the same lines (ingest.activity); the usage it wrote is checked
   against the generator's totals. The target is the meter's: the log in the ledger
   (IngestReport.meter_seconds); the whole run, status page included, is reported next to
   it. First with every batch parsed in this process (parse_workers=0: the next batch
   parsed in a thread while the previous one commits; the baseline), then as ingestion runs
   by default (big batches parsed in parts by worker processes, ingest.parallel);
4. the ledger's enforcement after that catch-up (usage_after_batch over every tenant the
   batches touched, as ingest_edge calls it), reported apart: it costs per tenant, not per
   line. The base (BENCH_INGEST_QUOTA) is set so that about half of the tenants are exhausted
   by the half log and most others pass 80 %: states and notices change for nearly all.
Rates are lines per wall second of the run, and lines per CPU second of: the ingest process
(all its threads), its parse workers (what their parts cost them, as they report it), its
PostgreSQL backend, and all three together. Memory: peak RSS of the ingest process sampled
every 20 ms during each end-to-end pass, compared between the first and the second half of
the file, and against a pass over half the file (the workers hold at most two batches' parts
and end with the run). The machine's load average is printed before and after: other
processes share it, and the workers and PostgreSQL need the same cores.

Environment (all optional):
  BENCH_DATABASE_URL     default postgres://postgres@127.0.0.1:5432/bench_ingest (recreated)
  BENCH_INGEST_LINES     default 2000000
  BENCH_INGEST_TENANTS   default 10000
  BENCH_INGEST_BATCHES   batch sizes to try, comma-separated (default 250000,1000000)
  BENCH_INGEST_DIR       where the log is written (default: a temporary directory)
  BENCH_INGEST_QUOTA     the monthly base during the bench, bytes (default 1400000000)
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import figure, recreate_database, setup_django  # noqa: E402

DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_ingest")
LINES = int(os.environ.get("BENCH_INGEST_LINES", "2000000"))
TENANTS = int(os.environ.get("BENCH_INGEST_TENANTS", "10000"))
BATCHES = [int(x) for x in os.environ.get("BENCH_INGEST_BATCHES", "250000,1000000").split(",") if x]
TARGET = 500_000
ENFORCE_TARGET = 2.0  # seconds: exhausted tenants known to the gate after a catch-up
EDGE = "bench"
os.environ["QUOTA_MONTHLY_BYTES"] = os.environ.get("BENCH_INGEST_QUOTA", "1400000000")

_TEMPLATE = (
    '{"ts":%.3f,"edge":"bench","tenant":"%s","host":"%s.m.example.io","method":"GET",'
    '"uri":"/v2/library/nginx/blobs/sha256:%064x","status":%d,"bytes_sent":%d,'
    '"body_bytes_sent":%d,"completion":"%s","request_time":0.012,"request_id":"%032x",'
    '"cache":"%s"}\n'
)


def _tenants() -> list[str]:
    from accelerator.labels import new_label
    from accelerator.models import Tenant
    from accounts.models import User

    users = User.objects.bulk_create(
        [User(email=f"bench{i}@example.com", password="!") for i in range(TENANTS)],
        batch_size=5000,
    )
    tenants = Tenant.objects.bulk_create(
        [Tenant(user=u, label=new_label()) for u in users], batch_size=5000
    )
    return [t.label for t in tenants]


def _generate(path: Path, labels: list[str]) -> dict[str, int]:
    """The log and, per label, the bytes it must be charged."""
    rng = random.Random(42)
    choices = [*labels, "unknownlabel", ""]
    weights = [1.0] * len(labels) + [len(labels) * 0.01, len(labels) * 0.01]
    statuses = (200, 200, 200, 206, 304, 404, 429)
    caches = ("HIT", "MISS", "")
    charged: dict[str, int] = {}
    ts = time.time() - LINES * 0.002 - 60
    done = 0
    with path.open("wb") as f:
        while done < LINES:
            k = min(50_000, LINES - done)
            lab = rng.choices(choices, weights=weights, k=k)
            st = rng.choices(statuses, k=k)
            ca = rng.choices(caches, k=k)
            out = []
            for i in range(k):
                ts += 0.002
                body = rng.randrange(50_000_000)
                s = st[i]
                out.append(
                    _TEMPLATE
                    % (ts, lab[i], lab[i], done + i, s, body + 400, body,
                       "OK" if s < 400 else "", done + i, ca[i])
                )  # fmt: skip
                if s == 200 or s == 206:
                    charged[lab[i]] = charged.get(lab[i], 0) + body
            f.write("".join(out).encode())
            done += k
    return charged


class RssSampler:
    """Peak resident memory of this process, sampled from /proc every 20 ms."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def __enter__(self) -> RssSampler:
        self.start = time.monotonic()
        self.base = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.samples.append((time.monotonic(), self._rss()))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.end = time.monotonic()

    def peak(self, first_half: bool | None = None) -> int:
        mid = (self.start + self.end) / 2
        vals = [r for t, r in self.samples if first_half is None or (t < mid) == first_half]
        return max(vals, default=self.base)


def _backend_cpu() -> float:
    """CPU seconds used so far by this connection's PostgreSQL backend (same machine)."""
    from django.db import connection

    with connection.cursor() as c:
        c.execute("SELECT pg_backend_pid()")
        pid = c.fetchone()[0]
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def _reset() -> None:
    from django.db import connection

    with connection.cursor() as c:
        c.execute(
            "TRUNCATE quota_usagebucket, quota_usagemonth, ingest_logfile, ingest_edgeingest, "
            "ingest_unknowntraffic, ingest_malformedcount, ingest_malformedsample"
        )


def _bare(path: Path) -> tuple[int, float, float]:
    w, c = time.perf_counter(), time.process_time()
    n = 0
    with path.open("rb") as f:
        for _ in f:
            n += 1
    return n, time.perf_counter() - w, time.process_time() - c


def _parse_only(path: Path, batch: int) -> tuple[int, float, float]:
    from ingest.parser import read_batch

    w, c = time.perf_counter(), time.process_time()
    n, pos = 0, 0
    with path.open("rb") as f:
        while True:
            b = read_batch(f, start=pos, max_lines=batch, max_bytes=1 << 62)
            n += b.lines
            pos = b.end
            if b.at_eof:
                break
    return n, time.perf_counter() - w, time.process_time() - c


def _end_to_end(path: Path, batch: int, parse_workers: int | None = None):
    from ingest.services import ingest_edge

    _reset()
    pg0 = _backend_cpu()
    w, c = time.perf_counter(), time.process_time()
    with RssSampler() as rss:
        report = ingest_edge(
            edge=EDGE,
            path=path,
            max_seconds=10**6,
            batch_lines=batch,
            enforce=False,
            parse_workers=parse_workers,
        )
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    pg = _backend_cpu() - pg0
    return report, wall, cpu, pg, rss


def _check(charged: dict[str, int]) -> None:
    from django.db.models import Sum

    from accelerator.models import Tenant
    from quota.models import UsageBucket

    got = dict(
        UsageBucket.objects.filter(edge=EDGE)
        .values("tenant_id")
        .annotate(b=Sum("bytes"))
        .values_list("tenant_id", "b")
    )
    ids = dict(Tenant.objects.values_list("label", "pk"))
    want = {ids[label]: b for label, b in charged.items() if label in ids and b}
    if got != want:
        raise SystemExit("end-to-end totals differ from the generator's: the bench is invalid")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _enforcement() -> None:
    """After the half log's catch-up (its usage is in the ledger): the settlement of every
    tenant it touched, once with the changes (states, notices) and once more with none."""
    from accelerator.models import Tenant
    from quota.models import QuotaNotice, UsageBucket
    from quota.settlement import usage_after_batch

    ids = sorted(set(UsageBucket.objects.filter(edge=EDGE).values_list("tenant_id", flat=True)))
    w = time.perf_counter()
    usage_after_batch(tenant_ids=ids)
    first = time.perf_counter() - w
    exhausted = Tenant.objects.filter(exhausted_at__isnull=False).count()
    notices = QuotaNotice.objects.count()
    w = time.perf_counter()
    usage_after_batch(tenant_ids=ids)
    again = time.perf_counter() - w
    figure(
        f"enforcement after a {len(ids):,}-tenant catch-up (usage_after_batch)",
        first,
        "s",
        ENFORCE_TARGET,
        f"{exhausted:,} tenants marked exhausted, {notices:,} notices recorded and queued; "
        f"{first / len(ids) * 1000:.3f} ms per tenant; the same call again, nothing to "
        f"change: {again:.2f} s",
    )


def main() -> int:
    recreate_database(DB_URL)
    setup_django(DB_URL)
    labels = _tenants()
    tmp = Path(os.environ.get("BENCH_INGEST_DIR") or tempfile.mkdtemp(prefix="bench-ingest-"))
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "access.log"
    half = tmp / "half.log"
    print(f"load average before: {_load()} on {os.cpu_count()} CPUs", flush=True)
    try:
        t0 = time.perf_counter()
        charged = _generate(path, labels)
        size = path.stat().st_size
        print(
            f"log: {LINES:,} lines, {size / 1e6:,.0f} MB, {TENANTS:,} tenants "
            f"(generated in {time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
        n, bw, bc = _bare(path)
        assert n == LINES
        figure("bare read (floor)", n / bw, "lines/s", note=f"CPU {n / bc:,.0f} lines/s")
        for batch in BATCHES:
            n, pw, pc = _parse_only(path, batch)
            assert n == LINES
            figure(
                f"parse+aggregate, batch {batch:,}",
                n / pw,
                "lines/s",
                note=f"CPU {n / pc:,.0f} lines/s; {pw / bw:.1f}x the bare read's time",
            )
            # The baseline, in this run: every batch parsed in this process.
            one, one_wall, one_cpu, one_pg, _rss = _end_to_end(path, batch, parse_workers=0)
            assert one.lines == LINES and not one.parsed_in_parts, one
            _check(charged)
            report, wall, cpu, pg, rss = _end_to_end(path, batch)
            assert report.lines == LINES, report
            _check(charged)
            workers = report.parse_cpu_seconds
            meter = report.meter_seconds
            assert report.activity_lines == LINES, report
            figure(
                f"end to end, parse workers / one process, batch {batch:,}",
                one.meter_seconds / meter,
                "x",
                note=f"the meter in one process: {LINES / one.meter_seconds:,.0f} lines/s wall "
                f"(its whole run {LINES / one_wall:,.0f}); "
                f"{LINES / (one_cpu + one_pg):,.0f} lines/CPU s with its PostgreSQL backend",
            )
            figure(
                f"end to end, the meter (log to ledger), batch {batch:,}",
                LINES / meter,
                "lines/s",
                TARGET,
                f"{report.batches} commits ({report.parsed_in_parts} batches parsed in parts, "
                f"{report.read_ahead_used} while the one before committed), "
                f"{report.buckets:,} buckets; {meter / bw:.1f}x the bare read's time; "
                f"of {meter:.1f} s: usage_apply {report.apply_seconds:.1f} s, "
                f"label lookups {report.resolve_seconds:.1f} s",
            )
            figure(
                f"end to end, the whole run (the meter, then the status page), batch {batch:,}",
                LINES / wall,
                "lines/s",
                note=f"the status page's pass: {report.activity_lines:,} lines in "
                f"{report.activity_seconds:.1f} s ({LINES / report.activity_seconds:,.0f} "
                f"lines/s, its writes included); {wall / bw:.1f}x the bare read's time",
            )
            figure(
                f"end to end per CPU second, batch {batch:,}",
                LINES / (cpu + workers + pg),
                "lines/CPU s",
                note=f"the ingest process {LINES / cpu:,.0f}, its parse workers "
                + (f"{LINES / workers:,.0f}" if workers else "none")
                + f", its PostgreSQL backend {LINES / pg:,.0f} lines/CPU s; "
                f"CPU seconds {cpu:.1f} + {workers:.1f} + {pg:.1f} in {wall:.1f} s "
                "(the whole run, status page included)",
            )
            figure(
                f"peak RSS during end to end, batch {batch:,}",
                round(rss.peak() / 1e6, 1),
                "MB",
                note=f"before {rss.base / 1e6:.0f} MB; first half of the run "
                f"{rss.peak(True) / 1e6:.0f} MB, second half {rss.peak(False) / 1e6:.0f} MB",
            )
        # Flat memory: half the file needs the same memory as the whole file.
        with path.open("rb") as src, half.open("wb") as dst:
            remaining = LINES // 2
            for line in src:
                dst.write(line)
                remaining -= 1
                if not remaining:
                    break
        report, wall, cpu, pg, rss_half = _end_to_end(half, BATCHES[-1])
        figure(
            "peak RSS, half the log",
            round(rss_half.peak() / 1e6, 1),
            "MB",
            note=f"{report.lines:,} lines in {wall:.1f} s",
        )
        print(f"max RSS of the whole bench process: "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:,.0f} MB "
              f"(includes the generator)")  # fmt: skip
        _enforcement()
        print(f"load average after: {_load()}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True) if not os.environ.get("BENCH_INGEST_DIR") else (
            path.unlink(missing_ok=True),
            half.unlink(missing_ok=True),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
