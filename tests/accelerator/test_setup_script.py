"""The one-line setup script against a fake root (ROOT=, NO_RESTART=1): merge, backup,
idempotence, refusal of a malformed daemon.json, --dry-run, containerd and podman files.
tests/e2e/test_setup_dockerd.py runs a real dockerd on its result."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from accelerator.services import tenant_rotate, tenant_start
from tests.conftest import require

pytestmark = pytest.mark.django_db

OTHER_KEYS = {
    "log-level": "warn",
    "storage-driver": "overlay2",
    "registry-mirrors": ["https://mirror.other.example"],
    "insecure-registries": ["10.0.0.1:5000"],
}


@pytest.fixture
def script(owner, tmp_path) -> tuple[Path, str]:
    tenant = tenant_start(user=owner)
    response = Client().get(reverse("accelerator_setup", args=[tenant.label]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/x-shellscript")
    path = tmp_path / "setup.sh"
    path.write_bytes(response.content)
    return path, tenant.label


def run(script: Path, root: Path, *args: str, **env) -> subprocess.CompletedProcess:
    sh = shutil.which("dash") or shutil.which("sh")
    return subprocess.run(
        [sh, str(script), *args],
        env={"PATH": os.environ["PATH"], "ROOT": str(root), "NO_RESTART": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_shellcheck_clean(script):
    require(shutil.which("shellcheck") is not None, "shellcheck (Debian package shellcheck)")
    done = subprocess.run(
        ["shellcheck", "--shell=sh", "--severity=style", str(script[0])],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout


def test_existing_daemon_json_keeps_its_keys_gets_a_backup_and_a_second_run_changes_nothing(
    script, tmp_path
):
    path, label = script
    root = tmp_path / "root"
    conf = root / "etc/docker/daemon.json"
    conf.parent.mkdir(parents=True)
    original = json.dumps(OTHER_KEYS).encode()
    conf.write_bytes(original)
    first = run(path, root, "docker")
    # No mirror answers on this port in a unit test: the script says so (the e2e test pings).
    assert first.returncode == 2 and "did not answer" in first.stdout, first.stderr
    merged = json.loads(conf.read_text())
    mirror = f"http://{label}.m.localhost:8480"
    assert merged["registry-mirrors"] == [mirror, "https://mirror.other.example"]
    assert {k: v for k, v in merged.items() if k != "registry-mirrors"} == {
        k: v for k, v in OTHER_KEYS.items() if k != "registry-mirrors"
    }
    backups = list(conf.parent.glob("daemon.json.bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == original
    assert f"changed: {conf}" in first.stdout
    assert "not restarted (NO_RESTART=1): docker" in first.stdout
    before = tree(root)
    second = run(path, root, "docker")
    assert f"unchanged: {conf}" in second.stdout
    assert "restart" not in second.stdout  # nothing changed: no daemon restarted
    assert tree(root) == before


def test_a_rotated_address_is_replaced_by_the_current_one(script, tmp_path, owner):
    path, old_label = script
    root = tmp_path / "root"
    run(path, root.joinpath("etc/docker").mkdir(parents=True) or root, "docker")
    tenant = tenant_rotate(tenant=owner.tenant)
    fresh = Client().get(reverse("accelerator_setup", args=[tenant.label])).content
    path.write_bytes(fresh)
    run(path, root, "docker")
    mirrors = json.loads((root / "etc/docker/daemon.json").read_text())["registry-mirrors"]
    assert mirrors == [f"http://{tenant.label}.m.localhost:8480"]
    # The old address's script is gone with it.
    assert Client().get(reverse("accelerator_setup", args=[old_label])).status_code == 404


@pytest.mark.parametrize(
    "content",
    [
        b'{"log-level": "warn",',  # cut short
        b"[1, 2]",  # not an object
        b'{"registry-mirrors": "http://x"}',  # not a list
        b"\xff\xfe{}",  # not UTF-8
    ],
)
def test_a_malformed_daemon_json_is_refused_and_left_byte_identical(script, tmp_path, content):
    path, _ = script
    root = tmp_path / "root"
    conf = root / "etc/docker/daemon.json"
    conf.parent.mkdir(parents=True)
    conf.write_bytes(content)
    done = run(path, root, "docker")
    assert done.returncode == 1
    assert "nothing was changed" in done.stderr and "Docker not configured" in done.stderr
    assert conf.read_bytes() == content
    assert tree(root) == {"etc/docker/daemon.json": content}


def test_dry_run_prints_the_diff_and_writes_nothing(script, tmp_path):
    path, label = script
    root = tmp_path / "root"
    (root / "etc/docker").mkdir(parents=True)
    (root / "etc/docker/daemon.json").write_text('{"log-level": "warn"}')
    (root / "etc/containerd").mkdir(parents=True)
    (root / "etc/containerd/config.toml").write_text("version = 2\n")
    before = tree(root)
    done = run(path, root, "--dry-run", "docker", "containerd", "podman")
    assert done.returncode == 0, done.stderr
    assert tree(root) == before
    assert f'+    "http://{label}.m.localhost:8480"' in done.stdout
    assert '+  config_path = "/etc/containerd/certs.d"' in done.stdout
    assert "dry run: nothing was written" in done.stdout


def test_containerd_certs_d_and_config_path_and_podman_drop_in(script, tmp_path):
    path, label = script
    root = tmp_path / "root"
    conf = root / "etc/containerd/config.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        'version = 2\n\n[plugins."io.containerd.grpc.v1.cri".registry]\n'
        '  [plugins."io.containerd.grpc.v1.cri".registry.auths]\n\n[debug]\n  level = "info"\n'
    )
    run(path, root, "containerd", "podman")
    text = conf.read_text()
    assert 'registry]\n  config_path = "/etc/containerd/certs.d"\n' in text
    assert text.count("config_path") == 1 and '[debug]\n  level = "info"' in text
    hosts = (root / "etc/containerd/certs.d/docker.io/hosts.toml").read_text()
    assert f'[host."http://{label}.m.localhost:8480"]' in hosts
    assert 'capabilities = ["pull", "resolve"]' in hosts
    dropin = root / "etc/containers/registries.conf.d/50-mirror-accelerator.conf"
    assert f'location = "{label}.m.localhost:8480"' in dropin.read_text()
    assert "insecure = true" in dropin.read_text()
    before = tree(root)
    again = run(path, root, "containerd", "podman")
    assert "restart" not in again.stdout and tree(root) == before
    # Without a config.toml, a minimal one that only sets config_path.
    other = tmp_path / "other"
    other.mkdir()
    run(path, other, "containerd")
    assert (
        'config_path = "/etc/containerd/certs.d"'
        in (other / "etc/containerd/config.toml").read_text()
    )


def test_bad_arguments_and_root(script, tmp_path):
    path, _ = script
    bad = run(path, tmp_path, "--force")
    assert bad.returncode == 1 and "unknown argument: --force" in bad.stderr
    missing = run(path, tmp_path / "nope", "docker")
    assert missing.returncode == 1 and "is not a directory" in missing.stderr


def test_unknown_labels_get_404_and_only_get_is_allowed(script, client):
    _, label = script
    for bad in ["aaaaaaaaaaaa", "x", "ABCDEFABCDEF", label + "a", "..%2f..%2fetc"]:
        assert client.get(f"/setup/{bad}.sh").status_code == 404, bad
    assert client.post(f"/setup/{label}.sh").status_code == 405


def test_a_quote_in_a_setting_cannot_break_out_of_the_script(owner, settings, tmp_path):
    settings.SITE_URL = "https://x.example/'; touch pwned; '"
    tenant = tenant_start(user=owner)
    text = Client().get(reverse("accelerator_setup", args=[tenant.label])).content
    path = tmp_path / "s.sh"
    path.write_bytes(text)
    run(path, tmp_path, "--dry-run", "podman", HOME=str(tmp_path))
    assert not (Path.cwd() / "pwned").exists() and not (tmp_path / "pwned").exists()
