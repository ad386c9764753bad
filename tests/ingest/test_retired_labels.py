"""The meter's rule for rotated labels: every 200/206 byte is charged to the tenant the label
was issued to, whenever the line was stamped (a download that ends after "Rotate", a request
on the old address before the edge's next gate sync); staff still see the late lines as
traffic on a retired label. Exactly once, including a label retired while its batch is parsed.
"""

from __future__ import annotations

import io
import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from ingest import parser
from ingest.labels import Redo, labels_resolve
from ingest.models import UnknownTraffic
from ingest.services import ingest_edge
from tests.ingest.conftest import EDGE, make_tenants, usage_by_tenant_hour
from tests.ingest.logs import HOUR, encode, record


def _retire(tenant_id: int, at: datetime) -> tuple[str, str]:
    """Rotate the tenant (the real service) and move the retirement to `at`."""
    from accelerator.models import RetiredLabel, Tenant
    from accelerator.services import tenant_rotate

    tenant = Tenant.objects.get(pk=tenant_id)
    old = tenant.label
    new = tenant_rotate(tenant=tenant).label
    RetiredLabel.objects.filter(label=old).update(retired_at=at)
    return old, new


def _charged_per_tenant() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for (tenant_id, _hour), acc in usage_by_tenant_hour().items():
        cur = out.setdefault(tenant_id, [0, 0, 0])
        for i in range(3):
            cur[i] += acc[i]
    return out


def _unknown_rows() -> dict[str, tuple[int, int, bool]]:
    out: dict[str, tuple[int, int, bool]] = {}
    for u in UnknownTraffic.objects.filter(edge=EDGE):
        requests, nbytes, retired = out.get(u.label, (0, 0, False))
        out[u.label] = (requests + u.requests, nbytes + u.bytes, retired or u.retired)
    return out


def _mid_hour(days_ago: int) -> datetime:
    now = timezone.now().replace(minute=30, second=0, microsecond=0)
    return now - timedelta(days=days_ago)


def _parse(lines: list[dict], retired: dict[str, float]) -> parser.Batch:
    data = b"".join(encode(r) for r in lines)
    return parser.read_batch(
        io.BytesIO(data), start=0, max_lines=10**6, max_bytes=1 << 40, retired=retired
    )


def _sum(charged) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for (tenant_id, _hour, _registry), acc in charged.items():
        cur = out.setdefault(tenant_id, [0, 0, 0])
        for i in range(3):
            cur[i] += acc[i]
    return out


@pytest.mark.django_db
def test_a_line_after_retirement_charges_the_tenant_and_shows_as_retired(django_user_model):
    (tenant_id,) = make_tenants(django_user_model, 1).values()
    at = _mid_hour(1)
    old, new = _retire(tenant_id, at)
    t = at.timestamp()
    lines = [
        record(ts=t - 60, label=old, body=1000),
        record(ts=t + 60, label=old, body=200, cache="HIT"),  # a download that ended late
        record(ts=t + 3 * HOUR, label=old, body=30),  # an old client, hours later
        record(ts=t + 3 * HOUR, label=old, status=404, body=9),  # refused: free
        record(ts=t + 61, label=new, body=4),
    ]
    charged, unknown = labels_resolve(batch=_parse(lines, {old: t}), retired={old: t})
    assert _sum(charged) == {tenant_id: [1234, 5, 1]}
    assert {k: v for k, v in unknown.items()} == {
        (old, t // HOUR, True): [200, 1, 1],
        (old, (t + 3 * HOUR) // HOUR, True): [30, 2, 0],
    }


@pytest.mark.django_db
def test_a_retirement_the_parse_did_not_know_redoes_for_staff_and_charges_once(
    django_user_model,
):
    (tenant_id,) = make_tenants(django_user_model, 1).values()
    at = _mid_hour(1)
    old, _new = _retire(tenant_id, at)
    t = at.timestamp()
    lines = [
        record(ts=t - 60, label=old, body=1000),
        record(ts=t + 60, label=old, body=200),
        record(ts=t + 2 * HOUR, label=old, body=30),
    ]
    # The hour of the retirement holds lines on both sides: which is which matters to staff.
    with pytest.raises(Redo) as redo:
        labels_resolve(batch=_parse(lines, {}), retired={})
    assert redo.value.labels == {old: t}
    charged, unknown = labels_resolve(batch=_parse(lines, redo.value.labels), retired={old: t})
    assert _sum(charged) == {tenant_id: [1230, 3, 0]}
    assert sum(acc[0] for acc in unknown.values()) == 230
    # Lines only in hours after the retirement need no Redo: all of them are late.
    charged, unknown = labels_resolve(batch=_parse(lines[2:], {}), retired={})
    assert _sum(charged) == {tenant_id: [30, 1, 0]}
    assert list(unknown.values()) == [[30, 1, 0]]


@pytest.mark.django_db(transaction=True)
def test_a_label_retired_while_its_batch_is_parsed_is_charged_exactly_once(
    django_user_model, log_path, monkeypatch
):
    """The rotation commits (another connection) between the parse and the resolution: the
    batch is refused (Redo), rolled back and parsed again; the tenant is charged every byte,
    once, and staff see the late ones."""
    (tenant_id,) = make_tenants(django_user_model, 1).values()
    from accelerator.models import Tenant

    old = Tenant.objects.get(pk=tenant_id).label
    at = _mid_hour(1)
    t = at.timestamp()
    lines = [
        record(ts=t - 60, label=old, body=1000),
        record(ts=t + 60, label=old, body=200),
        record(ts=t + 120, label=old, body=30, cache="HIT"),
    ]
    log_path.write_bytes(b"".join(encode(r) for r in lines))
    real_read = parser.read_batch
    reads: list[dict] = []

    def read_then_rotate(*args, **kw):
        batch = real_read(*args, **kw)
        reads.append(dict(kw["retired"]))
        if len(reads) == 1:

            def rotate() -> None:
                try:
                    _retire(tenant_id, at)
                finally:
                    connection.close()

            thread = threading.Thread(target=rotate)
            thread.start()
            thread.join(30)
        return batch

    monkeypatch.setattr(parser, "read_batch", read_then_rotate)
    report = ingest_edge(edge=EDGE, path=log_path)
    assert report.lines == 3
    assert reads[0].get(old) is None and reads[1][old] == t  # parsed again, knowing it
    assert _charged_per_tenant() == {tenant_id: [1230, 3, 1]}
    assert _unknown_rows() == {old: (2, 230, True)}
    # A replay changes nothing.
    assert ingest_edge(edge=EDGE, path=log_path).lines == 0
    assert _charged_per_tenant() == {tenant_id: [1230, 3, 1]}


@pytest.mark.django_db
@pytest.mark.parametrize("batch_lines", [7, 1000])
def test_rotations_never_change_what_a_tenant_is_charged(django_user_model, log_path, batch_lines):
    """Random lines over tenants rotated several times (recent retirements the run preloads,
    and old ones it does not): each tenant is charged the 200/206 bytes of all its labels;
    staff see exactly the lines stamped after each label's retirement."""
    rng = random.Random(batch_lines)
    tenants = make_tenants(django_user_model, 4)
    start = _mid_hour(12).timestamp()
    owner: dict[str, int] = dict(tenants)
    cutoffs: dict[str, float] = {}
    for tenant_id in sorted(tenants.values()):
        for days_ago in (10, 1):
            at = datetime.fromtimestamp(
                _mid_hour(days_ago).timestamp() + rng.randint(-1500, 1500), tz=UTC
            )
            retired, current = _retire(tenant_id, at)
            owner[current] = tenant_id
            cutoffs[retired] = at.timestamp()
    labels = sorted(owner) + ["nosuchlabel1"]
    end = timezone.now().timestamp()
    want: dict[int, list[int]] = {}
    late: dict[str, list[int]] = {}
    recs = []
    for i in range(600):
        label = rng.choice(labels)
        near = rng.choice([*cutoffs.values(), start, end - 60])
        ts = max(start, min(end, near + rng.uniform(-2 * HOUR, 2 * HOUR)))
        status = rng.choice([200, 200, 206, 304, 404])
        rec = record(ts=ts, label=label, status=status, body=rng.randint(0, 5000), rid=i)
        recs.append(rec)
        nbytes = rec["body_bytes_sent"] if status in (200, 206) else 0
        if label in owner:
            acc = want.setdefault(owner[label], [0, 0, 0])
            acc[0] += nbytes
            acc[1] += 1
        if label in cutoffs and rec["ts"] >= cutoffs[label]:
            acc = late.setdefault(label, [0, 0])
            acc[0] += 1
            acc[1] += nbytes
    recs.sort(key=lambda r: r["ts"])
    log_path.write_bytes(b"".join(encode(r) for r in recs))
    report = ingest_edge(edge=EDGE, path=log_path, batch_lines=batch_lines)
    assert report.lines == len(recs)
    got = {k: v[:2] for k, v in _charged_per_tenant().items()}
    assert got == {k: v[:2] for k, v in want.items()}
    rows = _unknown_rows()
    assert {k: [v[0], v[1]] for k, v in rows.items() if v[2]} == late


@pytest.mark.django_db
def test_a_label_the_runs_cache_found_current_then_retired_is_resolved_as_retired(
    django_user_model,
):
    """A run caches the tenants of the labels it found current (labels.LabelCache); a label
    rotated later in the run is still charged to its tenant, and its late lines are still
    shown to staff (or the batch parsed again), exactly as without the cache."""
    from accelerator.models import Tenant
    from ingest.labels import LabelCache

    (tenant_id,) = make_tenants(django_user_model, 1).values()
    cache = LabelCache()
    label = Tenant.objects.get(pk=tenant_id).label
    at = _mid_hour(1)
    t = at.timestamp()
    before = [record(ts=t - 2 * HOUR, label=label, body=7)]
    charged, unknown = labels_resolve(batch=_parse(before, {}), retired={}, cache=cache)
    assert cache.current == {label: tenant_id} and not unknown
    _retire(tenant_id, at)  # between two batches of the run
    after = [record(ts=t - 60, label=label, body=1000), record(ts=t + 60, label=label, body=5)]
    for use_cache in (cache, None):
        with pytest.raises(Redo):
            labels_resolve(batch=_parse(after, {}), retired={}, cache=use_cache)
        charged, unknown = labels_resolve(
            batch=_parse(after, {label: t}), retired={label: t}, cache=use_cache
        )
        assert _sum(charged) == {tenant_id: [1005, 2, 0]}
        assert list(unknown.values()) == [[5, 1, 0]]
