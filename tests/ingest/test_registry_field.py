"""The access log's ``registry`` field: lines without it are Docker Hub's (old logs still
parse), hostile values make the line malformed (counted, never charged to a wrong registry),
and each registry's bytes land in their own bucket."""

from __future__ import annotations

import io

import orjson
import pytest

from ingest import parser
from tests.ingest.logs import encode, record

T0 = 1_764_000_000.0


def _batch(data: bytes) -> parser.Batch:
    return parser.read_batch(io.BytesIO(data), start=0, max_lines=10**6, max_bytes=1 << 40)


def test_a_line_without_registry_is_docker_hubs() -> None:
    rec = parser.parse_line(encode(record(ts=T0, label="aaaa1111")).rstrip(b"\n"))
    assert rec.registry == "docker.io"


def test_each_registry_has_its_own_bucket() -> None:
    data = b"".join(
        [
            encode(record(ts=T0, label="aaaa1111", body=100)),  # old line: docker.io
            encode(record(ts=T0 + 1, label="aaaa1111", body=200, registry="docker.io")),
            encode(record(ts=T0 + 2, label="aaaa1111", body=4000, registry="ghcr.io")),
            encode(record(ts=T0 + 3, label="aaaa1111", body=70, registry="quay.io", rid=3)),
            # A refused request for a registry the edge does not mirror: logged with "", free.
            encode(record(ts=T0 + 4, label="aaaa1111", status=404, body=90, registry="")),
        ]
    )
    batch = _batch(data)
    hour = T0 // 3600
    assert batch.malformed_total == 0
    assert batch.usage == {
        ("aaaa1111", hour, "docker.io"): [300, 2, 0],
        ("aaaa1111", hour, "ghcr.io"): [4000, 1, 0],
        ("aaaa1111", hour, "quay.io"): [70, 1, 0],
        ("aaaa1111", hour, ""): [0, 1, 0],
    }


@pytest.mark.parametrize(
    "value",
    ["x" * 65, 7, None, ["ghcr.io"], {"a": 1}, True],
    ids=["too-long", "int", "null", "list", "object", "bool"],
)
def test_a_hostile_registry_makes_the_line_malformed(value) -> None:
    good = record(ts=T0, label="aaaa1111", body=500, registry="ghcr.io")
    bad = dict(good, registry=value, request_id="f" * 32)
    batch = _batch(encode(good) + orjson.dumps(bad) + b"\n" + encode(good))
    assert batch.malformed == {"field": 1}
    assert "registry" in batch.samples[0].reason
    # The good lines around it are charged, the bad one is not (and not to another registry).
    assert batch.usage == {("aaaa1111", T0 // 3600, "ghcr.io"): [1000, 2, 0]}


def test_a_field_after_registry_that_nobody_declared_is_still_refused() -> None:
    rec = dict(record(ts=T0, label="aaaa1111", registry="ghcr.io"), surprise="x")
    with pytest.raises(parser.MalformedLine):
        parser.parse_line(orjson.dumps(rec))
