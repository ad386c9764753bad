"""Access logs written together with their ground truth: what each label must be charged."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

import orjson

HOUR = 3600
CHARGED = (200, 206)


def record(
    *,
    ts: float,
    label: str,
    status: int = 200,
    body: int = 1000,
    cache: str = "MISS",
    edge: str = "local",
    rid: int = 0,
    registry: str | None = None,
) -> dict:
    """One line as the edge's nginx writes it (without ``registry``: as it did before the
    edge routed registries)."""
    rec = {
        "ts": round(ts, 3),
        "edge": edge,
        "tenant": label,
        "host": f"{label}.m.localhost:8480" if label else "127.0.0.1:8480",
        "method": "GET",
        "uri": "/v2/library/busybox/blobs/sha256:" + "ab" * 32,
        "status": status,
        "bytes_sent": body + 312,
        "body_bytes_sent": body,
        "completion": "OK" if status < 400 else "",
        "request_time": 0.004,
        "request_id": f"{rid:032x}",
        "cache": cache,
    }
    if registry is not None:
        rec["registry"] = registry
    return rec


def encode(rec: dict) -> bytes:
    return orjson.dumps(rec) + b"\n"


@dataclass
class Truth:
    """Expected totals per (label, hour): [charged bytes, requests, cache hits]."""

    buckets: dict[tuple[str, int], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0, 0])
    )
    lines: int = 0

    def add(self, rec: dict) -> None:
        acc = self.buckets[(rec["tenant"], int(rec["ts"] // HOUR))]
        if rec["status"] in CHARGED:
            acc[0] += rec["body_bytes_sent"]
        acc[1] += 1
        if rec["cache"] == "HIT":
            acc[2] += 1
        self.lines += 1

    def per_label(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for (label, _hour), acc in self.buckets.items():
            for i in range(3):
                out[label][i] += acc[i]
        return dict(out)

    def merge(self, other: Truth) -> None:
        for key, acc in other.buckets.items():
            for i in range(3):
                self.buckets[key][i] += acc[i]
        self.lines += other.lines


class LogMaker:
    """Random but reproducible lines over a set of labels, each recorded in ``truth``."""

    def __init__(self, labels: list[str], *, seed: int = 7, start: float = 1_764_355_200.0):
        self.labels = labels
        self.rng = random.Random(seed)
        self.ts = start
        self.rid = 0
        self.truth = Truth()

    def line(self, *, label: str | None = None, step: float = 0.25) -> bytes:
        rng = self.rng
        self.ts += step
        self.rid += 1
        rec = record(
            ts=self.ts,
            label=self.labels[rng.randrange(len(self.labels))] if label is None else label,
            status=rng.choice((200, 200, 200, 206, 304, 404, 429, 500)),
            body=rng.randrange(0, 5_000_000),
            cache=rng.choice(("HIT", "MISS", "", "EXPIRED")),
            rid=self.rid,
        )
        self.truth.add(rec)
        return encode(rec)

    def lines(self, n: int, **kw) -> bytes:
        return b"".join(self.line(**kw) for _ in range(n))


_TEMPLATE = (
    '{"ts":%.3f,"edge":"local","tenant":"%s","host":"%s.m.localhost:8480","method":"GET",'
    '"uri":"/v2/library/busybox/blobs/sha256:%064x","status":%d,"bytes_sent":%d,'
    '"body_bytes_sent":%d,"completion":"%s","request_time":0.004,"request_id":"%032x",'
    '"cache":"%s"}\n'
)


def write_log(
    path,
    labels: list[str],
    n: int,
    *,
    seed: int,
    start: float = 1_764_355_200.0,
    step: float = 0.01,
) -> Truth:
    """A large log written fast (a template, not a JSON encoder), with its truth."""
    rng = random.Random(seed)
    truth = Truth()
    buckets = truth.buckets
    statuses = (200, 200, 200, 206, 304, 404, 429, 500)
    caches = ("HIT", "MISS", "", "EXPIRED")
    ts = start
    with open(path, "wb") as f:
        done = 0
        while done < n:
            k = min(20_000, n - done)
            lab = rng.choices(labels, k=k)
            st = rng.choices(statuses, k=k)
            ca = rng.choices(caches, k=k)
            out = []
            for i in range(k):
                ts += step
                body = rng.randrange(5_000_000)
                t = round(ts, 3)
                out.append(
                    _TEMPLATE
                    % (
                        t,
                        lab[i],
                        lab[i],
                        done + i,
                        st[i],
                        body + 300,
                        body,
                        "OK" if st[i] < 400 else "",
                        done + i,
                        ca[i],
                    )
                )
                acc = buckets[(lab[i], int(t // HOUR))]
                if st[i] == 200 or st[i] == 206:
                    acc[0] += body
                acc[1] += 1
                if ca[i] == "HIT":
                    acc[2] += 1
            f.write("".join(out).encode())
            done += k
    truth.lines = n
    return truth
