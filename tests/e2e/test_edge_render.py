"""Rendering the edge's configs and the gate map; the render and sync commands; the beat task."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accelerator.gate import GateState
from accelerator.services import tenant_start, tenant_suspend
from edge import render as edge_config
from edge.gate_sync import gate_sync
from edge.run_dir import edge_render
from tests.conftest import require
from tests.e2e import harness

pytestmark = pytest.mark.e2e

PARAMS = harness.RENDER_PARAMS


def template(name: str) -> str:
    return (harness.DEPLOY / name).read_text()


def test_gate_map_is_sorted_lowercase_and_skips_unusable_labels():
    text, skipped = edge_config.gate_map(
        {
            "bbbbbbbbbbbb": GateState.SUSPENDED,
            "AAAAAAAAAAAA": GateState.ACTIVE,
            "bad label;": GateState.ACTIVE,
            "x" * 64: GateState.ACTIVE,
            "cccccccccccc": "nonsense",
        }
    )
    assert text.splitlines()[1:] == ["aaaaaaaaaaaa active;", "bbbbbbbbbbbb suspended;"]
    assert sorted(skipped) == sorted(["bad label;", "x" * 64, "cccccccccccc"])
    assert edge_config.gate_map({"b": "active", "a": "active"}) == edge_config.gate_map(
        {"a": "active", "b": "active"}
    )


@pytest.mark.parametrize(
    "change, words",
    [
        ({"name": "edge one"}, "EDGE_NAME"),
        ({"name": 'x"}'}, "EDGE_NAME"),
        ({"mirror_domain": "M.Example.io"}, "MIRROR_DOMAIN"),
        ({"mirror_domain": "m.example.io;"}, "MIRROR_DOMAIN"),
        ({"listen": "8480"}, "EDGE_LISTEN"),
        ({"registry_listen": "127.0.0.1:5000; evil"}, "EDGE_REGISTRY_LISTEN"),
        ({"upstream_url": "ftp://x"}, "UPSTREAM_URL"),
        ({"upstream_url": "https://x' y"}, "UPSTREAM_URL"),
        ({"upstream_url": "https://x.io/v2"}, "UPSTREAM_URL"),
        ({"upstream_username": "u"}, "UPSTREAM_PASSWORD"),
        ({"worker_processes": "many"}, "EDGE_WORKER_PROCESSES"),
        ({"proxy_buffer_size": "64 k"}, "EDGE_PROXY_BUFFER_SIZE"),
        ({"verify_listen": "127.0.0.1:8484; evil"}, "EDGE_VERIFY_LISTEN"),
        ({"verify_listen": ""}, "EDGE_VERIFY_LISTEN"),
        ({"slice_size": "8 m"}, "EDGE_SLICE_SIZE"),
        ({"slice_size": "8m;"}, "EDGE_SLICE_SIZE"),
        ({"slice_size": "0"}, "EDGE_SLICE_SIZE"),
        ({"slice_size": "1k"}, "EDGE_SLICE_SIZE"),
        ({"slice_size": "2048m"}, "EDGE_SLICE_SIZE"),
        ({"slice_size": "8g"}, "EDGE_SLICE_SIZE"),
        ({"slice_size": "-8m"}, "EDGE_SLICE_SIZE"),
        ({"parent_url": "ftp://parent", "parent_secret": "s" * 32}, "EDGE_PARENT_URL"),
        ({"parent_url": "http://p/x", "parent_secret": "s" * 32}, "EDGE_PARENT_URL"),
        ({"parent_url": "http://p;evil", "parent_secret": "s" * 32}, "EDGE_PARENT_URL"),
        ({"parent_url": "http://parent:8485"}, "EDGE_PARENT_SECRET"),
        ({"parent_url": "http://parent:8485", "parent_secret": "short"}, "EDGE_PARENT_SECRET"),
        ({"child_listen": "0.0.0.0:8485"}, "EDGE_PARENT_SECRET"),
        ({"child_listen": "0.0.0.0:8485", "parent_secret": '"' * 40}, "EDGE_PARENT_SECRET"),
        ({"child_listen": "0.0.0.0:8485", "parent_secret": "a b" * 20}, "EDGE_PARENT_SECRET"),
        ({"child_listen": "8485", "parent_secret": "s" * 32}, "EDGE_CHILD_LISTEN"),
        ({"run_dir": Path("/srv/my edge")}, "paths"),
        ({"access_log": Path("/srv/log;x")}, "paths"),
    ],
)
def test_bad_settings_are_refused_with_the_setting_named(change, words):
    with pytest.raises(edge_config.EdgeConfigError, match=words):
        edge_config.nginx_conf(template("nginx/edge.conf.template"), replace(PARAMS, **change))


def test_rendered_files_have_no_placeholders_and_carry_settings():
    nginx = edge_config.nginx_conf(template("nginx/edge.conf.template"), PARAMS)
    assert "@@" not in nginx
    assert '"edge":"edge-1"' in nginx and r"\.m\.example\.io$" in nginx
    assert "listen 127.0.0.1:8480 default_server;" in nginx
    registry = edge_config.registry_conf(
        template("registry/proxy.yml.template"),
        replace(PARAMS, upstream_username="bot", upstream_password='p"a:ss\\'),
        http_secret="s",
    )
    assert "@@" not in registry
    assert '  password: "p\\"a:ss\\\\"' in registry
    assert 'remoteurl: "https://registry-1.docker.io"' in registry
    no_creds = edge_config.registry_conf(
        template("registry/proxy.yml.template"), PARAMS, http_secret="s"
    )
    assert "username" not in no_creds


def test_slices_are_rendered_in_bytes_and_keyed_by_digest_and_range():
    nginx = edge_config.nginx_conf(template("nginx/edge.conf.template"), PARAMS)
    assert f"slice {8 * 1024 * 1024};" in nginx
    assert "proxy_cache_key $blob_digest$slice_range;" in nginx
    assert edge_config.slice_bytes("512k") == 512 * 1024 and edge_config.slice_bytes("1M") == 2**20


def test_missing_placeholder_value_is_an_error():
    with pytest.raises(edge_config.EdgeConfigError, match="@@NOPE@@"):
        edge_config.fill("x @@NOPE@@", {})


def test_edge_render_writes_valid_nginx_config_and_keeps_the_gate_map(settings, request):
    require(harness.which("nginx") is not None, "nginx is not installed")
    tmp_path = harness.worker_readable_dir("e2e-render-")
    request.addfinalizer(lambda: shutil.rmtree(tmp_path, ignore_errors=True))
    settings.EDGE_RUN_DIR = tmp_path / "edge"
    settings.EDGE_ACCESS_LOG = tmp_path / "edge" / "logs" / "access.log"
    settings.EDGE_REGISTRY_STORAGE_DIR = tmp_path / "registry"
    settings.EDGE_CACHE_DIR = tmp_path / "cache"
    settings.EDGE_LISTEN = f"127.0.0.1:{harness.free_port()}"
    files = edge_render()
    assert files.registry_conf.stat().st_mode & 0o777 == 0o600
    check = subprocess.run(
        [*harness.nginx_cmd(files.run_dir), "-t"], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stderr
    files.gate_map.write_text("# last known\nabcdefghijkl active;\n")
    edge_render()
    assert files.gate_map.read_text() == "# last known\nabcdefghijkl active;\n"


def test_edge_render_command_reports_bad_settings(settings, tmp_path):
    settings.EDGE_RUN_DIR = tmp_path / "edge"
    settings.EDGE_NAME = "bad name"
    with pytest.raises(CommandError, match="EDGE_NAME"):
        call_command("edge_render")
    assert not (tmp_path / "edge" / "nginx.conf").exists()


@pytest.mark.django_db
def test_gate_sync_writes_only_on_change_and_reflects_the_gate(settings, tmp_path, owner, stranger):
    settings.EDGE_RUN_DIR = tmp_path
    tenant = tenant_start(user=owner)
    other = tenant_start(user=stranger)
    first = gate_sync()
    assert first.changed and not first.reloaded and first.tenants == 2  # no nginx running
    text = (tmp_path / "gate.map").read_text()
    assert f"{tenant.label} active;" in text and f"{other.label} active;" in text
    mtime = (tmp_path / "gate.map").stat().st_mtime_ns
    assert not gate_sync().changed
    assert (tmp_path / "gate.map").stat().st_mtime_ns == mtime
    tenant_suspend(tenant=tenant, reason="x")
    assert gate_sync().changed
    assert f"{tenant.label} suspended;" in (tmp_path / "gate.map").read_text()


@pytest.mark.django_db
def test_sync_command_and_beat_task(settings, tmp_path, owner, capsys):
    from edge.tasks import edge_gate_sync

    settings.EDGE_RUN_DIR = tmp_path
    tenant_start(user=owner)
    call_command("edge_sync")
    assert "1 tenants, changed=True, reloaded=False" in capsys.readouterr().out
    assert edge_gate_sync() == {
        "tenants": 1,
        "changed": False,
        "reloaded": False,
        "pending": False,
    }
    assert "edge-gate-sync" in settings.CELERY_BEAT_SCHEDULE
    with pytest.raises(CommandError):
        call_command("edge_sync", "--interval", "0")


def test_nginx_reload_without_nginx_is_harmless(tmp_path):
    from edge.gate_sync import nginx_reload

    assert nginx_reload(pid_file=tmp_path / "missing.pid") is False
    (tmp_path / "stale.pid").write_text("999999999\n")
    assert nginx_reload(pid_file=tmp_path / "stale.pid") is False
    (tmp_path / "junk.pid").write_text("not a pid")
    assert nginx_reload(pid_file=tmp_path / "junk.pid") is False


def test_render_refuses_dirs_nginx_workers_cannot_reach(settings, tmp_path):
    import os

    if os.geteuid() != 0:
        pytest.skip("only root hands the cache to another user")
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    settings.EDGE_RUN_DIR = tmp_path / "edge"
    settings.EDGE_CACHE_DIR = closed / "cache"
    settings.EDGE_WORKER_USER = ""
    with pytest.raises(CommandError, match="not searchable by others"):
        call_command("edge_render")
    settings.EDGE_WORKER_USER = "root"
    call_command("edge_render")
    assert "user root;" in (tmp_path / "edge" / "nginx.conf").read_text()
