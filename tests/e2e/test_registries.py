"""Every registry through one personal address (issue 15), with real clients.

Three plain Distribution registries stand in for Docker Hub, ghcr.io and quay.io; the edge
mirrors them (UPSTREAMS) with a pull-through registry each and the shared blob cache.
containerd pulls with the console's ``_default/hosts.toml`` (it sends ``?ns=<registry>``),
podman with the console's drop-in (a mirror ``<host>/ghcr.io``: the path-prefix form), the
Docker daemon a prefixed name (``<host>/ghcr.io/org/tool:1.0``) and Docker Hub through its
``registry-mirrors``. Outbound requests are counted on the fake upstreams' own logs.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from config.upstreams import Upstream
from tests.conftest import require
from tests.e2e import harness
from tests.e2e.conftest import sync_gate

pytestmark = pytest.mark.e2e

EDGE = "regs"
DENIED = "ghcr.io/org/blocked"


@dataclass
class Fake:
    """A fake upstream registry and the images it holds: {(repository, tag): Image}."""

    registry: harness.Registry
    images: dict[tuple[str, str], harness.Image]

    def log(self) -> str:
        return self.registry.proc.log_tail(10**9)


@dataclass
class Setup:
    edge: harness.Edge
    fakes: dict[str, Fake]  # by registry name (docker.io, ghcr.io, quay.io)
    workdir: Path
    # quay.io is reached through an nginx that answers every request with 503 (or 429) while
    # this file holds that status: an upstream that is there but refuses.
    quay_refuses: Path


def start_front(workdir: Path, upstream_port: int) -> tuple[harness.Proc, str]:
    """In front of quay.io's stand-in: refuses everything while a flag file names a status."""
    front = workdir / "front-quay"
    location = (
        f"if (-f {front}/refuse-503) {{ return 503; }}\n"
        f"if (-f {front}/refuse-429) {{ return 429; }}\n"
        f"proxy_pass http://127.0.0.1:{upstream_port};\n"
        "proxy_set_header Host $http_host;"
    )
    return harness.start_front_nginx(front, location, name="front-quay")


@pytest.fixture(scope="module")
def regs() -> Iterator[Setup]:
    for part in ("nginx", "docker-registry"):
        require(harness.which(part) is not None, f"{part} is not installed")
    workdir = harness.worker_readable_dir("e2e-registries-")
    # podman run as root keeps a blob-info cache there (no option moves it): gone afterwards
    # unless it was there before.
    podman_cache = Path("/var/lib/containers")
    podman_cache_existed = podman_cache.exists()
    arch = harness.host_arch()
    content = {
        "docker.io": {("library/accel-reg", "latest"): b"from docker hub"},
        "ghcr.io": {("org/tool", "1.0"): b"from ghcr", ("org/blocked", "1.0"): b"taken down"},
        "quay.io": {("team/app", "2.0"): b"from quay, somewhat longer" * 40},
    }
    fakes: dict[str, Fake] = {}
    edge = front = None
    try:
        for name, repos in content.items():
            registry = harness.start_registry(workdir / f"fake-{name}", name=f"fake-{name}")
            fakes[name] = Fake(registry, {})
            for (repo, tag), data in repos.items():
                image = harness.make_image(files={"f": data + name.encode()}, arch=arch)
                harness.push_image(registry.port, repo, tag, image)
                fakes[name].images[(repo, tag)] = image
        front, quay_url = start_front(workdir, fakes["quay.io"].registry.port)
        edge = harness.start_edge(
            workdir,
            upstream_url=fakes["docker.io"].registry.url,
            upstreams={"ghcr.io": fakes["ghcr.io"].registry.url, "quay.io": quay_url},
            deny=(DENIED,),
            name=EDGE,
            mirror_domain="m.localhost",
        )
        yield Setup(edge, fakes, workdir, workdir / "front-quay")
    finally:
        if edge is not None:
            edge.stop()
        if front is not None:
            front.stop()
        for fake in fakes.values():
            fake.registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if not podman_cache_existed:
            shutil.rmtree(podman_cache, ignore_errors=True)


@pytest.fixture
def regs_settings(settings, regs):
    """The console renders snippets for this edge's registries and port."""
    settings.UPSTREAMS = tuple(Upstream(u.name, u.url) for u in regs.edge.params.upstreams)
    settings.MIRROR_DOMAIN = "m.localhost"
    settings.MIRROR_SCHEME = "http"
    settings.MIRROR_PORT = regs.edge.port
    return settings


@pytest.fixture
def new_tenant(regs, regs_settings, hosts, db, django_user_model):
    from allauth.account.models import EmailAddress

    from accelerator.services import tenant_start

    def make():
        email = f"reg-{secrets.token_hex(4)}@example.com"
        user = django_user_model.objects.create_user(email=email, password="e2e-pass-12345")
        EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
        t = tenant_start(user=user)
        hosts.add(regs.edge.host(t.label, port=False))
        sync_gate(regs.edge)
        return t

    return make


@pytest.fixture
def tenant(new_tenant):
    return new_tenant()


def snippet(label: str, key: str) -> str:
    from accelerator.selectors import client_snippets

    return next(s for s in client_snippets(label=label) if s.key == key).content


def tenant_lines(edge: harness.Edge, label: str) -> list[dict]:
    return [line for line in edge.log_lines() if line["tenant"] == label]


def wait_in_log(fake: Fake, needle: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while needle not in fake.log():
        assert time.monotonic() < deadline, f"{needle!r} never reached {fake.registry.url}"
        time.sleep(0.05)


def fresh(regs: Setup, what: str) -> Path:
    return regs.workdir / f"{what}-{secrets.token_hex(3)}"


def containerd_pull(regs: Setup, label: str, refs: list[str]) -> None:
    """A fresh containerd pulls refs with the console's _default hosts.toml for label."""
    hosts_dir = fresh(regs, "certs.d")
    (hosts_dir / "_default").mkdir(parents=True)
    (hosts_dir / "_default" / "hosts.toml").write_text(snippet(label, "containerd"))
    ctd = harness.start_containerd(fresh(regs, "containerd"))
    try:
        for ref in refs:
            result = ctd.pull(ref, hosts_dir)
            assert result.returncode == 0, (ref, result.stderr[-2000:])
    finally:
        ctd.stop()


def test_containerd_pulls_every_registry_with_the_consoles_default_hosts_toml(
    regs, tenant, new_tenant, regs_settings, client
):
    require(harness.which("containerd") is not None, "containerd is not installed")
    containerd_pull(
        regs,
        tenant.label,
        ["docker.io/library/accel-reg:latest", "ghcr.io/org/tool:1.0", "quay.io/team/app:2.0"],
    )
    # Another tenant pulls one of them (warm now): charged its own bytes, for that registry.
    other = new_tenant()
    containerd_pull(regs, other.label, ["ghcr.io/org/tool:1.0"])
    other_served = defaultdict(int)
    for line in tenant_lines(regs.edge, other.label):
        if line["status"] in (200, 206):
            other_served[line["registry"]] += line["body_bytes_sent"]
    assert set(other_served) == {"ghcr.io"}

    lines = tenant_lines(regs.edge, tenant.label)
    served = defaultdict(int)
    for line in lines:
        assert "ns=" in line["uri"], line  # containerd names the registry on every request
        if line["status"] in (200, 206):
            served[line["registry"]] += line["body_bytes_sent"]
    # Every blob of each image came through the edge, from its own registry.
    for name, fake in regs.fakes.items():
        for (repo, _tag), image in fake.images.items():
            if repo == "org/blocked":
                continue
            for blob in image.blobs:
                assert any(
                    line["uri"].startswith(f"/v2/{repo}/blobs/{blob.digest}?ns={name}")
                    and line["status"] == 200
                    and line["registry"] == name
                    for line in lines
                ), (name, repo, blob.digest)
                # The cache's one fill, in slices (206s): the blob's bytes read once.
                assert fake.registry.blob_bytes(blob.digest) == blob.size
    assert set(served) == {"docker.io", "ghcr.io", "quay.io"}

    # Ingested: the tenant is charged exactly the bytes, per registry, and sees the split.
    from ingest.services import ingest_edge
    from quota.models import UsageBucket

    ingest_edge(edge=EDGE, path=regs.edge.access_log)
    charged = defaultdict(int)
    for row in UsageBucket.objects.filter(tenant=tenant):
        charged[row.registry] += row.bytes
    assert dict(charged) == dict(served)
    other_charged = defaultdict(int)
    for row in UsageBucket.objects.filter(tenant=other, bytes__gt=0):
        other_charged[row.registry] += row.bytes
    assert dict(other_charged) == dict(other_served)

    client.force_login(tenant.user)
    body = client.get(reverse("console")).content.decode()
    for name, nbytes in served.items():
        assert f'<tr data-registry="{name}"><td>{name}</td><td data-bytes="{nbytes}">' in body

    # The API's usage, read by the same signed-in browser session.
    today = timezone.now().date().isoformat()
    usage = client.get("/api/v1/usage/", {"start": today, "end": today}).json()
    assert {r["registry"]: r["bytes"] for r in usage["registries"]} == dict(served)
    assert usage["total_bytes"] == sum(served.values())


def test_podman_pulls_ghcr_and_quay_with_the_consoles_drop_in(regs, tenant):
    require(harness.which("podman") is not None, "podman is not installed")
    dropin = snippet(tenant.label, "podman")
    root = fresh(regs, "podman")
    for ref in ("ghcr.io/org/tool:1.0", "quay.io/team/app:2.0"):
        result = harness.podman_pull(root, dropin, ref)
        assert result.returncode == 0, result.stderr[-2000:]
    lines = tenant_lines(regs.edge, tenant.label)
    # podman sends no ns=: the mirror's path prefix names the registry.
    for prefix, name in (
        ("/v2/ghcr.io/org/tool/", "ghcr.io"),
        ("/v2/quay.io/team/app/", "quay.io"),
    ):
        ours = [line for line in lines if line["uri"].startswith(prefix)]
        assert ours and all(line["registry"] == name for line in ours)
        assert any("/manifests/" in line["uri"] and line["status"] == 200 for line in ours)


def test_docker_pulls_a_prefixed_name_and_docker_hub_through_its_mirror(
    regs, tenant, docker_daemon
):
    daemon = docker_daemon(mirrors=[regs.edge.url(tenant.label)])
    prefixed = f"{regs.edge.host(tenant.label)}/ghcr.io/org/tool:1.0"
    for ref in (prefixed, "accel-reg"):
        result = daemon.cli("pull", ref)
        assert result.returncode == 0, result.stderr[-2000:]
    lines = tenant_lines(regs.edge, tenant.label)
    assert any(
        line["uri"].startswith("/v2/ghcr.io/org/tool/manifests/")
        and line["status"] == 200
        and line["registry"] == "ghcr.io"
        for line in lines
    )
    assert any(
        line["uri"].startswith("/v2/library/accel-reg/manifests/")
        and line["status"] == 200
        and line["registry"] == "docker.io"
        for line in lines
    )


def test_an_unknown_registry_is_refused_and_nothing_is_dialled(regs, tenant):
    marker = f"unknown{secrets.token_hex(4)}"
    for path in (
        f"/v2/{marker}/img/manifests/latest?ns=evil.example",
        f"/v2/{marker}/img/manifests/latest?ns=127.0.0.1:22",
        f"/v2/evil.example/{marker}/img/manifests/latest",
        f"/v2/{marker}.example/img/blobs/sha256:{'ab' * 32}",
        f"/v2/{marker}/img/blobs/sha256:{'ab' * 32}?ns=ghcr.io.evil.example",
    ):
        response = regs.edge.get(tenant.label, path)
        assert response.status == 404, (path, response.body)
        assert response.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    # Then one request that does reach every fake upstream: once it has arrived, anything the
    # refused ones had sent would have arrived before it.
    sentinel = f"sentinel{secrets.token_hex(4)}"
    for name, fake in regs.fakes.items():
        response = regs.edge.get(tenant.label, f"/v2/{sentinel}/x/manifests/latest?ns={name}")
        assert response.status == 404
        wait_in_log(fake, sentinel)
    for fake in regs.fakes.values():
        assert marker not in fake.log()
    for proxy in [regs.edge.registry, *regs.edge.upstream_registries.values()]:
        assert marker not in proxy.proc.log_tail(10**9)
    refused = [line for line in tenant_lines(regs.edge, tenant.label) if marker in line["uri"]]
    assert len(refused) == 5 and all(line["registry"] == "" for line in refused)


def test_a_denied_repository_is_refused_by_tag_and_by_digest(regs, tenant):
    ghcr = regs.fakes["ghcr.io"]
    image = ghcr.images[("org/blocked", "1.0")]

    def asked_for_it() -> int:  # pulls of the denied repository that reached ghcr.io
        return sum(
            1
            for line in ghcr.log().splitlines()
            if '"GET /v2/org/blocked/' in line or '"HEAD /v2/org/blocked/manifests' in line
        )

    before = asked_for_it()
    paths = [
        "/v2/org/blocked/manifests/1.0?ns=ghcr.io",
        f"/v2/org/blocked/manifests/{image.digest}?ns=ghcr.io",
        "/v2/ghcr.io/org/blocked/manifests/1.0",
        f"/v2/ghcr.io/org/blocked/manifests/{image.digest}",
        "/v2/ghcr.io/org/blocked/tags/list",
        *(f"/v2/ghcr.io/org/blocked/blobs/{b.digest}" for b in image.blobs),
        *(f"/v2/org/blocked/blobs/{b.digest}?ns=ghcr.io" for b in image.blobs),
    ]
    for method in ("GET", "HEAD"):
        for path in paths:
            response = regs.edge.get(tenant.label, path, method)
            assert response.status == 403, (method, path)
            if method == "GET":
                assert response.json()["errors"][0]["code"] == "DENIED"
    # Spellings that could slip past a string match are refused before routing, or denied.
    for path in (
        "/v2/ghcr.io/org/blocked/manifests/1.0?ns=",
        "/v2/org/blocked/manifests/1.0?ns=ghcr.io&ns=quay.io",
        "/v2/ghcr.io//org/blocked/manifests/1.0",
        "/v2/ghcr.io/org//blocked/manifests/1.0",
        "/v2/ghcr.io/org/./blocked/manifests/1.0",
        "/v2/ghcr.io/org/%62locked/manifests/1.0",
        "/v2/ghcr%2eio/org/blocked/manifests/1.0",
        "/v2/org/blocked/manifests/1%2e0?ns=ghcr.io",
        "/v2/ghcr.io/ORG/blocked/manifests/1.0",
    ):
        assert regs.edge.get(tenant.label, path).status in (400, 403, 404), path
    # The same repository name at another registry is not denied.
    assert regs.edge.get(tenant.label, "/v2/org/blocked/manifests/1.0?ns=quay.io").status == 404
    sentinel = f"sentinel{secrets.token_hex(4)}"
    regs.edge.get(tenant.label, f"/v2/ghcr.io/{sentinel}/x/manifests/latest")
    wait_in_log(ghcr, sentinel)
    assert asked_for_it() == before


def test_containerd_pulls_a_registry_the_operator_does_not_list_from_that_registry(regs, tenant):
    """The _default snippet sends every registry to the mirror; one it does not mirror is a free
    404 there, and containerd goes on to the registry itself."""
    require(harness.which("containerd") is not None, "containerd is not installed")
    elsewhere = harness.start_registry(fresh(regs, "elsewhere"), name="elsewhere")
    try:
        harness.push_image(
            elsewhere.port, "team/other", "3.0", harness.make_image(files={"o": b"x"})
        )
        containerd_pull(regs, tenant.label, [f"127.0.0.1:{elsewhere.port}/team/other:3.0"])
        assert '"GET /v2/team/other/manifests/' in elsewhere.proc.log_tail(10**9)
    finally:
        elsewhere.stop()
    refused = [
        line for line in tenant_lines(regs.edge, tenant.label) if "team/other" in line["uri"]
    ]
    assert refused and all(line["status"] == 404 and line["registry"] == "" for line in refused)


@pytest.mark.parametrize("status", [503, 429])
def test_an_upstream_refusing_with_503_or_429_still_serves_what_was_pulled(regs, tenant, status):
    require(harness.which("containerd") is not None, "containerd is not installed")
    hosts_dir = fresh(regs, "certs.d")
    (hosts_dir / "_default").mkdir(parents=True)
    (hosts_dir / "_default" / "hosts.toml").write_text(snippet(tenant.label, "containerd"))
    flag = regs.quay_refuses / f"refuse-{status}"

    def pull() -> None:
        ctd = harness.start_containerd(fresh(regs, "containerd"))
        try:
            result = ctd.pull("quay.io/team/app:2.0", hosts_dir)
            assert result.returncode == 0, result.stderr[-2000:]
        finally:
            ctd.stop()

    pull()
    flag.write_text("")
    try:
        # The refusal is real: the stand-in answers it to anyone who asks.
        port = int(regs.edge.params.upstreams[1].url.rsplit(":", 1)[1])
        assert harness.request(port, "GET", "/v2/", host="127.0.0.1").status == status
        pull()
    finally:
        flag.unlink()
    lines = [
        line
        for line in tenant_lines(regs.edge, tenant.label)
        if line["uri"].startswith("/v2/team/app/manifests/")
    ]
    assert lines and all(line["status"] == 200 for line in lines)
    # Besides our own check (one line), the edge's registry asked and was refused.
    refused = [
        line
        for line in (regs.quay_refuses / "access.log").read_text().splitlines()
        if f'HTTP/1.1" {status} ' in line
    ]
    assert len(refused) >= 2, refused


def test_every_upstream_stopped_tags_already_pulled_still_pull_with_each_client(
    regs, tenant, docker_daemon
):
    """Last in this module: it stops the fake upstreams."""
    for part in ("containerd", "podman"):
        require(harness.which(part) is not None, f"{part} is not installed")
    hosts_dir = fresh(regs, "certs.d")
    (hosts_dir / "_default").mkdir(parents=True)
    (hosts_dir / "_default" / "hosts.toml").write_text(snippet(tenant.label, "containerd"))
    dropin = snippet(tenant.label, "podman")
    refs = ["docker.io/library/accel-reg:latest", "ghcr.io/org/tool:1.0", "quay.io/team/app:2.0"]
    prefixed = f"{regs.edge.host(tenant.label)}/quay.io/team/app:2.0"

    def pull_everything() -> None:
        ctd = harness.start_containerd(fresh(regs, "containerd"))
        try:
            for ref in refs:
                result = ctd.pull(ref, hosts_dir)
                assert result.returncode == 0, (ref, result.stderr[-2000:])
        finally:
            ctd.stop()
        root = fresh(regs, "podman")
        for ref in refs[1:]:
            result = harness.podman_pull(root, dropin, ref)
            assert result.returncode == 0, (ref, result.stderr[-2000:])
        # A fresh daemon each time: nothing it pulled before can hide a refusal.
        daemon = harness.start_dockerd(
            fresh(regs, "dockerd"), mirrors=[regs.edge.url(tenant.label)]
        )
        try:
            for ref in (prefixed, "accel-reg"):
                result = daemon.cli("pull", ref)
                assert result.returncode == 0, (ref, result.stderr[-2000:])
        finally:
            daemon.stop()

    pull_everything()  # warm: every tag pulled once by each client
    for fake in regs.fakes.values():
        fake.registry.stop()
    pull_everything()  # every upstream down: served from the edge alone
    stale = [
        line
        for line in tenant_lines(regs.edge, tenant.label)
        if "/manifests/" in line["uri"] and line["status"] >= 500
    ]
    assert stale == []
