"""The pure rules of the status page: clients from User-Agents, pulls, refusal reasons."""

from __future__ import annotations

import pytest

from accelerator.clients import (
    RECENT_PULLS,
    Client,
    Pull,
    client_from_agent,
    pull_add,
    pull_path,
    pulls_merge,
    refusal_reason,
)

DOCKER_20 = (
    "docker/20.10.24+dfsg1 go/go1.19.8 git-commit/5d6db84 kernel/6.1.0-13-amd64 os/linux "
    "arch/amd64 UpstreamClient(Docker-Client/20.10.24+dfsg1 \\(linux\\))"
)


@pytest.mark.parametrize(
    ("agent", "kind", "version", "cli"),
    [
        (DOCKER_20, Client.DOCKER, "20.10.24+dfsg1", "20.10.24+dfsg1"),
        ("docker/24.0.7 go/go1.20.10 os/linux arch/arm64", Client.DOCKER, "24.0.7", ""),
        ("containerd/v1.6.20~ds1", Client.CONTAINERD, "1.6.20~ds1", ""),
        ("libpod/4.3.1", Client.PODMAN, "4.3.1", ""),
        ("skopeo/1.9.3", Client.SKOPEO, "1.9.3", ""),
        # podman 4.3 (measured): its image library's agent, no podman version.
        ("containers/5.23.1 (github.com/containers/image)", Client.PODMAN, "", ""),
        ("containers/5.23.1", Client.OTHER, "", ""),
        ("curl/7.88.1", Client.OTHER, "", ""),
        ("", Client.OTHER, "", ""),
        # Hostile: a name without a version, a version that is not one, a giant agent.
        ("docker/", Client.OTHER, "", ""),
        ("docker/<script>", Client.OTHER, "", ""),
        ("docker/1" + "9" * 5000, Client.DOCKER, "1" + "9" * 40, ""),
        ("Mozilla/5.0 docker/24.0.7", Client.OTHER, "", ""),
    ],
)
def test_client_from_agent(agent, kind, version, cli):
    info = client_from_agent(agent)
    assert (info.kind, info.version, info.cli_version) == (kind, version, cli)
    assert len(info.version) <= 41


def test_pull_path_accepts_pull_requests_only():
    digest = "sha256:" + "ab" * 32
    assert pull_path("/v2/library/nginx/manifests/latest") == (
        "library/nginx",
        "manifests",
        "latest",
    )
    assert pull_path(f"/v2/a/b/c/blobs/{digest}") == ("a/b/c", "blobs", digest)
    assert pull_path("/v2/library/nginx/manifests/latest?ns=docker.io")[0] == "library/nginx"
    for bad in (
        "/v2/",
        "/v2/_catalog",
        "/v2/x/tags/list",
        "/v2/../manifests/x",
        "/v2/X/manifests/a",
    ):
        assert pull_path(bad) is None, bad


def test_a_docker_pull_is_one_pull_with_its_tag_and_all_its_bytes():
    pulls: list[Pull] = []
    d1, d2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    pull_add(pulls, repo="library/nginx", ref="latest", nbytes=0, ts=100.0)  # the tag HEAD
    pull_add(pulls, repo="library/nginx", ref=d1, nbytes=1500, ts=100.1)  # the list
    pull_add(pulls, repo="library/nginx", ref=d2, nbytes=500, ts=100.2)  # the platform's
    pull_add(pulls, repo="library/nginx", ref="", nbytes=10_000, ts=101.0)  # a blob
    pull_add(pulls, repo="library/redis", ref="7", nbytes=10, ts=102.0)
    assert [(p.repo, p.ref, p.bytes) for p in pulls] == [
        ("library/nginx", "latest", 12_000),
        ("library/redis", "7", 10),
    ]
    # The same repository a long time later is another pull.
    pull_add(pulls, repo="library/nginx", ref="latest", nbytes=1, ts=1000.0)
    assert len(pulls) == 3


def test_pulls_keep_the_twenty_latest_and_merge_across_batches():
    pulls: list[Pull] = []
    for i in range(30):
        pull_add(pulls, repo=f"r{i}", ref="t", nbytes=i, ts=float(i * 100))
    assert len(pulls) == RECENT_PULLS
    assert pulls[0].repo == "r10" and pulls[-1].repo == "r29"
    # A pull cut by a batch boundary: its blobs arrive in the next batch, tag-less.
    first = [Pull("library/nginx", "latest", 100, 5000.0, 5000.5)]
    second = [Pull("library/nginx", "", 900, 5001.0, 5002.0), Pull("x", "1", 5, 5003.0, 5003.0)]
    merged = pulls_merge(first, second)
    assert [(p.repo, p.ref, p.bytes, p.last) for p in merged] == [
        ("library/nginx", "latest", 1000, 5002.0),
        ("x", "1", 5, 5003.0),
    ]
    assert first[0].bytes == 100  # the stored list is not modified in place


def test_refusal_reasons():
    assert refusal_reason(status=429, retired=False, exhausted_since=10.0, ts=20.0) == "exhausted"
    assert (
        refusal_reason(status=429, retired=False, exhausted_since=None, ts=20.0) == "rate_limited"
    )
    assert refusal_reason(status=403, retired=False, exhausted_since=None, ts=1.0) == "suspended"
    assert refusal_reason(status=404, retired=True, exhausted_since=None, ts=1.0) == "rotated"
    # A 404 on a current address is the registry's "unknown image", no refusal.
    assert refusal_reason(status=404, retired=False, exhausted_since=None, ts=1.0) is None
