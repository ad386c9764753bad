"""Ingestion keeps each tenant's activity: first and last request, client, pulls, refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.utils import timezone

from accelerator.models import RetiredLabel, Tenant, TenantActivity
from ingest.models import LogFile, MalformedCount
from ingest.services import ingest_edge
from quota.models import UsageBucket
from tests.ingest.conftest import EDGE, make_tenants
from tests.ingest.logs import record

pytestmark = pytest.mark.django_db(transaction=True)

DOCKER = (
    "docker/20.10.24+dfsg1 go/go1.19.8 git-commit/5d6db84 kernel/6.1.0 os/linux arch/amd64 "
    "UpstreamClient(Docker-Client/20.10.24+dfsg1 \\(linux\\))"
)
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def line(label: str, ts: float, uri: str, *, status=200, body=100, method="GET", ua=DOCKER, **kw):
    r = record(ts=ts, label=label, status=status, body=body, **kw)
    r.update(method=method, uri=uri)
    if ua is not None:
        r["ua"] = ua
    return orjson.dumps(r) + b"\n"


def docker_pull(label: str, ts: float, repo="library/nginx", tag="latest") -> bytes:
    return b"".join(
        [
            line(label, ts, "/v2/", body=2),
            line(label, ts + 0.1, f"/v2/{repo}/manifests/{tag}", method="HEAD", body=0),
            line(label, ts + 0.2, f"/v2/{repo}/manifests/{D1}", body=1000),
            line(label, ts + 0.3, f"/v2/{repo}/blobs/{D2}", body=50_000),
        ]
    )


def test_a_pull_shows_client_times_and_the_pull_and_old_lines_without_ua_still_count(
    django_user_model, log_path
):
    ((label, tid),) = make_tenants(django_user_model, 1).items()
    t0 = timezone.now().timestamp() - 30
    # An old-format line (no "ua") is read and charged, and shows no client.
    log_path.write_bytes(line(label, t0, "/v2/", body=2, ua=None) + docker_pull(label, t0 + 5))
    ingest_edge(edge=EDGE, path=log_path)
    a = TenantActivity.objects.get(tenant_id=tid)
    assert a.first_seen_at == datetime.fromtimestamp(round(t0, 3), tz=UTC)
    assert a.last_seen_at == datetime.fromtimestamp(round(t0 + 5.3, 3), tz=UTC)
    assert (a.client, a.client_version, a.client_cli_version) == (
        "docker",
        "20.10.24+dfsg1",
        "20.10.24+dfsg1",
    )
    assert [(p["repository"], p["reference"], p["bytes"]) for p in a.recent_pulls] == [
        ("library/nginx", "latest", 51_000)
    ]
    assert sum(UsageBucket.objects.filter(tenant_id=tid).values_list("bytes", flat=True)) == (
        2 + 2 + 0 + 1000 + 50_000
    )
    assert not MalformedCount.objects.exists()
    # A replayed ingestion changes nothing; a later batch moves last seen only.
    ingest_edge(edge=EDGE, path=log_path)
    assert TenantActivity.objects.get(tenant_id=tid).recent_pulls == a.recent_pulls
    with log_path.open("ab") as f:
        f.write(line(label, t0 + 20, "/v2/", body=2, ua="containerd/1.6.20~ds1"))
    ingest_edge(edge=EDGE, path=log_path)
    b = TenantActivity.objects.get(tenant_id=tid)
    assert b.first_seen_at == a.first_seen_at and b.last_seen_at > a.last_seen_at
    assert (b.client, b.client_version) == ("containerd", "1.6.20~ds1")
    assert len(b.recent_pulls) == 1


def test_refusals_with_their_reasons_and_one_email_a_day(
    django_user_model, log_path, mailoutbox, eager_tasks
):
    labels = make_tenants(django_user_model, 2)
    (a_label, a_id), (b_label, b_id) = labels.items()
    now = timezone.now()
    # a used up its month a minute ago. The ledger is not asked here (enforce=False): its
    # enforcement, which runs before the status page's pass, would find this log's few bytes
    # and lift it.
    Tenant.objects.filter(pk=a_id).update(exhausted_at=now - timedelta(minutes=1))
    t = now.timestamp() - 10
    log_path.write_bytes(
        docker_pull(a_label, t - 100)
        + line(a_label, t, "/v2/library/redis/manifests/7", method="HEAD", status=429, body=0)
        # b: a per-accelerator limit (not exhausted): shown, but no email
        + line(b_label, t, f"/v2/library/redis/blobs/{D2}", status=429, body=0)
    )
    ingest_edge(edge=EDGE, path=log_path, enforce=False)
    a = TenantActivity.objects.get(tenant_id=a_id)
    assert (a.last_refusal_reason, a.last_refusal_path) == (
        "exhausted",
        "/v2/library/redis/manifests/7",
    )
    assert TenantActivity.objects.get(tenant_id=b_id).last_refusal_reason == "rate_limited"
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == [django_user_model.objects.get(tenant__pk=a_id).email]
    assert "quota used up" in mailoutbox[0].body
    # More refusals the same day: no second email.
    with log_path.open("ab") as f:
        f.write(line(a_label, t + 5, "/v2/library/redis/manifests/7", status=429, body=0))
    ingest_edge(edge=EDGE, path=log_path, enforce=False)
    assert TenantActivity.objects.get(tenant_id=a_id).last_refusal_at > a.last_refusal_at
    assert len(mailoutbox) == 1


def test_a_rotated_address_still_in_use_is_a_refusal_of_its_tenant(django_user_model, log_path):
    ((label, tid),) = make_tenants(django_user_model, 1).items()
    RetiredLabel.objects.create(label="oldlabel1", tenant_id=tid)
    t = timezone.now().timestamp()
    log_path.write_bytes(
        line("oldlabel1", t, "/v2/library/nginx/manifests/latest", status=404, body=0)
        # A 404 on the current address is an unknown image, not a refusal.
        + line(label, t + 1, "/v2/library/nope/manifests/latest", status=404, body=0)
    )
    ingest_edge(edge=EDGE, path=log_path)
    a = TenantActivity.objects.get(tenant_id=tid)
    assert a.last_refusal_reason == "rotated"
    assert a.recent_pulls == []


@pytest.mark.parametrize(
    "ua",
    [
        "x" * 5000,  # longer than nginx ever writes: kept bounded, the line still charged
        '"},"tenant":"other',  # JSON inside the agent stays a string
        "\u0000\u202e<script>alert(1)</script>",
    ],
)
def test_hostile_agents_are_stored_bounded_and_the_line_is_still_charged(
    django_user_model, log_path, ua
):
    ((label, tid),) = make_tenants(django_user_model, 1).items()
    t = timezone.now().timestamp()
    log_path.write_bytes(line(label, t, f"/v2/library/x/blobs/{D2}", body=777, ua=ua))
    ingest_edge(edge=EDGE, path=log_path)
    a = TenantActivity.objects.get(tenant_id=tid)
    assert a.user_agent == "".join(c for c in ua if c.isprintable())[:256]
    assert a.client == "other"
    assert sum(UsageBucket.objects.filter(tenant_id=tid).values_list("bytes", flat=True)) == 777


def test_a_mistyped_ua_is_a_malformed_line(django_user_model, log_path):
    ((label, tid),) = make_tenants(django_user_model, 1).items()
    r = record(ts=timezone.now().timestamp(), label=label)
    r["ua"] = 12
    log_path.write_bytes(orjson.dumps(r) + b"\n")
    ingest_edge(edge=EDGE, path=log_path)
    assert MalformedCount.objects.get().kind == "field"
    assert not TenantActivity.objects.filter(tenant_id=tid).exists()


def test_a_pull_cut_by_batch_boundaries_is_still_one_pull(django_user_model, log_path):
    ((label, tid),) = make_tenants(django_user_model, 1).items()
    t = timezone.now().timestamp() - 30
    log_path.write_bytes(docker_pull(label, t) + docker_pull(label, t + 1, repo="library/redis"))
    ingest_edge(edge=EDGE, path=log_path, batch_lines=1)  # one line per batch
    pulls = TenantActivity.objects.get(tenant_id=tid).recent_pulls
    assert [(p["repository"], p["reference"], p["bytes"]) for p in pulls] == [
        ("library/nginx", "latest", 51_000),
        ("library/redis", "latest", 51_000),
    ]


def test_activity_of_many_small_batches_is_written_as_of_one_batch(django_user_model, log_path):
    """A run writes its batches' activity together: merged per label, the same rows as one big
    batch gives (first and last request, client, the pull's bytes, the last refusal)."""
    labels = make_tenants(django_user_model, 2)
    t0 = timezone.now().timestamp() - 60
    data = b"".join(docker_pull(label, t0 + i * 0.01) for i, label in enumerate(labels))
    data += b"".join(
        line(label, t0 + 20, f"/v2/library/nginx/blobs/{D2}", body=7) for label in labels
    )
    data += b"".join(
        line(label, t0 + 25, "/v2/library/nginx/manifests/latest", status=429, body=0)
        for label in labels
    )

    def rows():
        return {
            a.tenant_id: (
                a.first_seen_at,
                a.last_seen_at,
                a.client,
                a.client_version,
                a.recent_pulls,
                a.last_refusal_at,
                a.last_refusal_path,
            )
            for a in TenantActivity.objects.order_by("tenant_id")
        }

    log_path.write_bytes(data)
    ingest_edge(edge=EDGE, path=log_path, batch_lines=100_000)
    whole = rows()
    assert len(whole) == 2
    TenantActivity.objects.all().delete()
    UsageBucket.objects.all().delete()
    other = log_path.with_name("again.log")
    other.write_bytes(data)
    ingest_edge(edge=EDGE + "-b", path=other, batch_lines=1)  # one line per batch
    assert rows() == whole


@pytest.mark.django_db
def test_stored_instants_read_back_to_the_microsecond(django_user_model):
    """activity_record reads the rows as epoch seconds (one JSON document): a second fold sees
    exactly the instants the first stored, so "the same or later" still holds for equal ones."""
    from accelerator.activity import ActivityDelta, activity_record
    from accelerator.clients import Pull

    (tenant_id,) = make_tenants(django_user_model, 1).values()
    first, last = 4_102_444_799.999999, 4_102_444_800.0 - 0.000001  # the parser's upper bound
    pull = Pull("library/nginx", "latest", 10, last, last)

    def fold(agent: str, at: float) -> None:
        activity_record(
            deltas=[
                ActivityDelta(
                    tenant_id=tenant_id,
                    retired=False,
                    first=first,
                    last=at,
                    agent=agent,
                    pulls=[pull],
                    refusals={403: (at, "/v2/")},
                )
            ]
        )

    fold("docker/27.0.1", last)
    fold("containerd/1.7.2", last)  # the same instant: the latest agent wins
    row = TenantActivity.objects.get(tenant_id=tenant_id)
    at = datetime.fromtimestamp(last, tz=UTC)
    assert (row.first_seen_at, row.last_seen_at) == (datetime.fromtimestamp(first, tz=UTC), at)
    assert row.user_agent == "containerd/1.7.2" and row.client == "containerd"
    assert row.last_pull_at == at and row.last_refusal_at == at
    assert row.last_refusal_reason == "suspended" and len(row.recent_pulls) == 1
    assert row.recent_pulls[0]["bytes"] == 20


def _pulls(tid: int) -> list[tuple[str, str, int]]:
    a = TenantActivity.objects.filter(tenant_id=tid).first()
    return (
        [] if a is None else [(p["repository"], p["reference"], p["bytes"]) for p in a.recent_pulls]
    )


def test_the_status_pages_pass_reads_only_what_the_meter_has_read(django_user_model, log_path):
    ((label, tid),) = make_tenants(django_user_model, 1).items()
    t0 = timezone.now().timestamp() - 60
    first = docker_pull(label, t0, repo="library/one")
    second = docker_pull(label, t0 + 10, repo="library/two")
    log_path.write_bytes(first + second)
    # The meter stops after its first batch (the first pull): the page shows that pull only.
    report = ingest_edge(edge=EDGE, path=log_path, max_seconds=0, batch_lines=4)
    assert report.lines == 4 and report.activity_lines == 4
    row = LogFile.objects.get(edge=EDGE)
    assert row.position == len(first) == row.activity_position
    assert _pulls(tid) == [("library/one", "latest", 51_000)]
    report = ingest_edge(edge=EDGE, path=log_path)
    assert report.lines == 4 and report.activity_lines == 4
    row.refresh_from_db()
    assert row.position == row.activity_position == len(first + second)
    assert sorted(_pulls(tid)) == [
        ("library/one", "latest", 51_000),
        ("library/two", "latest", 51_000),
    ]


def test_a_rotated_file_gone_before_the_status_pages_pass_read_it_is_skipped(
    django_user_model, log_path, monkeypatch
):
    from ingest import services

    ((label, tid),) = make_tenants(django_user_model, 1).items()
    t0 = timezone.now().timestamp() - 60
    old = docker_pull(label, t0, repo="library/old")
    log_path.write_bytes(old)
    rotated = log_path.with_name("access.log.1")
    # The meter reads the old file to its end and the new one; the process ends before the
    # status page's pass (a crash, here a pass that does nothing).
    real = services._activity_pass
    monkeypatch.setattr(services, "_activity_pass", lambda **kw: None)
    ingest_edge(edge=EDGE, path=log_path)
    log_path.rename(rotated)
    log_path.write_bytes(docker_pull(label, t0 + 10, repo="library/new"))
    ingest_edge(edge=EDGE, path=log_path)
    assert not TenantActivity.objects.filter(tenant_id=tid).exists()
    # Then the rotated file goes (logrotate compressed it) before the next run.
    rotated.unlink()
    monkeypatch.setattr(services, "_activity_pass", real)
    report = ingest_edge(edge=EDGE, path=log_path)
    assert report.lines == 0  # the meter had it all
    assert report.activity_skipped_bytes == len(old)
    assert report.activity_lines == 4
    assert _pulls(tid) == [("library/new", "latest", 51_000)]
    assert all(r.activity_position == r.position for r in LogFile.objects.filter(edge=EDGE))
    # Charged all the same: the meter read both files.
    assert sum(UsageBucket.objects.filter(tenant_id=tid).values_list("bytes", flat=True)) == 2 * (
        2 + 0 + 1000 + 50_000
    )


def test_a_file_cut_shorter_than_the_meter_read_is_skipped_not_read_again_and_again(
    django_user_model, log_path, monkeypatch
):
    from ingest import services

    ((label, tid),) = make_tenants(django_user_model, 1).items()
    t0 = timezone.now().timestamp() - 600
    log_path.write_bytes(
        b"".join(docker_pull(label, t0 + i, repo=f"library/r{i}") for i in range(40))
    )
    real = services._activity_pass
    monkeypatch.setattr(services, "_activity_pass", lambda **kw: None)
    ingest_edge(edge=EDGE, path=log_path)  # the meter only (the process ended before the page)
    read = LogFile.objects.get(edge=EDGE).position
    with log_path.open("r+b") as f:  # cut mid-line, well past the head that identifies it
        f.truncate(read // 2)
    monkeypatch.setattr(services, "_activity_pass", real)
    report = ingest_edge(edge=EDGE, path=log_path)
    # What is left of the old file was read, the rest skipped: the pass moved past it (the
    # meter took what is at the log path now for a new file, as for any truncation).
    assert 0 < report.activity_skipped_bytes < read
    cut = LogFile.objects.get(edge=EDGE, position=read)
    assert cut.lost and cut.activity_position == read
    assert all(r.activity_position == r.position for r in LogFile.objects.filter(edge=EDGE))
    assert _pulls(tid)
