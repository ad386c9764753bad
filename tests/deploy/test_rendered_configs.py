"""Every rendered configuration is checked by the program that reads it, with real parts.

- the edge's nginx.conf with HTTPS and the console site included: `nginx -t`, then served: one
  nginx tells the console host (real gunicorn behind it) from *.MIRROR_DOMAIN by SNI and Host;
- the console site alone inside a distribution-style nginx.conf: `nginx -t`;
- registry.yml: Distribution 2.8 has no `config check`, so the closest real check is to serve
  it and see it answer /v2/ (and a broken one refused at start);
- logrotate.conf: a real logrotate run against a real nginx: rotated by rename, nginx reopened,
  ingestion counts every line once across the rotation.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import require
from tests.e2e import harness

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = "console.localhost"


def _require(*names: str) -> None:
    for name in names:
        require(harness.which(name) is not None, f"{name} is not installed")


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = harness.worker_readable_dir("deploy-test-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def self_signed(workdir: Path, *names: str) -> tuple[Path, Path]:
    """A throwaway certificate for the names given (the first is the subject)."""
    _require("openssl")
    return harness.self_signed_cert(workdir / "tls.crt", workdir / "tls.key", *names)


@pytest.fixture
def production_like(settings, workdir):
    """Settings of a single server: edge on HTTP and HTTPS, console site, one certificate."""
    cert, key = self_signed(workdir, CONSOLE, f"*.{settings.MIRROR_DOMAIN}")
    run = workdir / "edge"
    settings.EDGE_RUN_DIR = run
    settings.EDGE_ACCESS_LOG = run / "logs" / "access.log"
    settings.EDGE_REGISTRY_STORAGE_DIR = workdir / "registry"
    settings.EDGE_CACHE_DIR = workdir / "cache"
    settings.EDGE_LISTEN = f"127.0.0.1:{harness.free_port()}"
    settings.EDGE_TLS_LISTEN = f"127.0.0.1:{harness.free_port()}"
    settings.EDGE_TLS_CERT = str(cert)
    settings.EDGE_TLS_KEY = str(key)
    settings.EDGE_REGISTRY_LISTEN = f"127.0.0.1:{harness.free_port()}"
    # nginx listens on the fetch port too: a fixed default could be taken by another run.
    settings.EDGE_FETCH_LISTEN = f"127.0.0.1:{harness.free_port()}"
    settings.EDGE_TOKEN_LISTEN = f"127.0.0.1:{harness.free_port()}"
    settings.EDGE_VERIFY_LISTEN = f"127.0.0.1:{harness.free_port()}"
    # A closed port: nothing here may depend on reaching Docker Hub.
    settings.UPSTREAM_URL = f"http://127.0.0.1:{harness.free_port()}"
    settings.SITE_URL = f"https://{CONSOLE}"
    settings.WEB_LISTEN = f"127.0.0.1:{harness.free_port()}"
    settings.CONSOLE_HTTP_LISTEN = settings.EDGE_LISTEN
    settings.CONSOLE_TLS_LISTEN = settings.EDGE_TLS_LISTEN
    settings.CONSOLE_TLS_CERT = str(cert)
    settings.CONSOLE_TLS_KEY = str(key)
    return settings, cert


def render_all() -> Path:
    call_command("edge_render")
    call_command("deploy_render", "--console")
    from django.conf import settings

    return Path(settings.EDGE_RUN_DIR)


def nginx_test(run: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*harness.nginx_cmd(run), "-t"], capture_output=True, text=True, timeout=30
    )


def test_edge_with_tls_and_the_console_site_pass_nginx_t(production_like):
    _require("nginx")
    run = render_all()
    result = nginx_test(run)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    dump = subprocess.run(
        [*harness.nginx_cmd(run), "-T"], capture_output=True, text=True, timeout=30
    ).stdout
    # The console site is really part of it, HTTPS on the edge's TLS listener.
    assert f"server_name {CONSOLE};" in dump
    assert dump.count(f"listen {production_like[0].EDGE_TLS_LISTEN} ssl") == 2
    # A wrong certificate path fails the check with nginx's own message.
    site = run / "sites" / "console.conf"
    site.write_text(site.read_text().replace("tls.crt", "missing.crt"))
    result = nginx_test(run)
    assert result.returncode != 0 and "missing.crt" in result.stderr


def test_console_site_alone_passes_nginx_t_in_a_distribution_style_nginx(production_like):
    _require("nginx")
    settings, _cert = production_like
    out = Path(settings.EDGE_RUN_DIR).parent / "conf.d" / "accelerator.conf"
    call_command("deploy_render", "--console-output", str(out))
    base = out.parent.parent
    (base / "nginx.conf").write_text(
        f"pid {base}/nginx.pid;\nerror_log {base}/error.log;\nevents {{}}\n"
        f"http {{\n    include {out.parent}/*.conf;\n}}\n"
    )
    result = subprocess.run(
        [harness.which("nginx"), "-p", f"{base}/", "-c", str(base / "nginx.conf"), "-t"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "change, message",
    [
        ({"SITE_URL": "http://console.localhost"}, "SITE_URL must be https://"),
        ({"SITE_URL": "https://"}, "SITE_URL must be https://"),
        ({"CONSOLE_TLS_CERT": ""}, "CONSOLE_TLS_CERT is not set"),
        ({"CONSOLE_TLS_KEY": "relative/key.pem"}, "CONSOLE_TLS_KEY must be an absolute path"),
        ({"CONSOLE_TLS_LISTEN": ""}, "CONSOLE_TLS_LISTEN must be host:port"),
        ({"WEB_LISTEN": "127.0.0.1:80; evil"}, "WEB_LISTEN must be host:port"),
    ],
)
def test_deploy_render_refuses_bad_settings_and_writes_nothing(production_like, change, message):
    settings, _cert = production_like
    for key, value in change.items():
        setattr(settings, key, value)
    with pytest.raises(CommandError, match=message):
        call_command("deploy_render", "--console")
    assert not (Path(settings.EDGE_RUN_DIR) / "sites" / "console.conf").exists()
    assert not (Path(settings.EDGE_RUN_DIR) / "logrotate.conf").exists()


def _https(port: int, host: str, path: str, cafile: Path) -> tuple[int, dict, bytes]:
    ctx = ssl.create_default_context(cafile=str(cafile))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    # Certificate check against the name asked for (SNI), not the loopback address dialled.
    conn.sock = ctx.wrap_socket(
        socket.create_connection(("127.0.0.1", port), 10), server_hostname=host
    )
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@contextmanager
def console_stack(settings, run: Path, **env: str) -> Iterator[None]:
    """The console (gunicorn) behind the rendered single-server nginx, both answering; env:
    more of gunicorn's environment."""
    web_port = int(settings.WEB_LISTEN.rsplit(":", 1)[1])
    gunicorn = harness.Proc.start(
        "gunicorn",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi",
            "-c",
            str(ROOT / "deploy" / "gunicorn.conf.py"),
            "--bind",
            settings.WEB_LISTEN,
            "--workers",
            "1",
        ],
        log=run / "logs" / "gunicorn.log",
        env={
            "DJANGO_DEBUG": "true",
            "DATABASE_URL": harness.database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "DJANGO_ALLOWED_HOSTS": CONSOLE,
            "VAR_DIR": str(run.parent / "var"),
            **env,
        },
    )
    nginx = harness.Proc.start("nginx", harness.nginx_cmd(run), log=run / "logs" / "nginx.out")
    try:
        harness.wait_port(web_port, proc=gunicorn, timeout=30)
        harness.wait_port(int(settings.EDGE_TLS_LISTEN.rsplit(":", 1)[1]), proc=nginx)
        yield
    finally:
        nginx.stop()
        gunicorn.stop()


def test_one_nginx_serves_the_console_over_https_and_the_mirror_hosts(production_like, db):
    """The rendered single-server nginx with real gunicorn behind the console host."""
    _require("nginx")
    settings, cert = production_like
    with console_stack(settings, render_all()):
        tls_port = int(settings.EDGE_TLS_LISTEN.rsplit(":", 1)[1])
        http_port = int(settings.EDGE_LISTEN.rsplit(":", 1)[1])

        # The console over HTTPS: Django's own login page through nginx.
        status, headers, body = _https(tls_port, CONSOLE, "/accounts/login/", cert)
        assert status == 200, body[:500]
        assert b'name="password"' in body or b"password" in body.lower()
        # Plain HTTP to the console host is only a redirect to HTTPS.
        resp = harness.request(http_port, "GET", "/accounts/login/?next=/", host=CONSOLE)
        assert resp.status == 301
        assert resp.headers["Location"] == f"https://{CONSOLE}/accounts/login/?next=/"
        # A mirror host on the same listener is the edge: the wildcard certificate, the gate.
        mirror = f"abcdefghijkl.{settings.MIRROR_DOMAIN}"
        status, headers, body = _https(tls_port, mirror, "/v2/", cert)
        assert status == 404 and b"NAME_UNKNOWN" in body
        assert headers.get("Docker-Distribution-API-Version") == "registry/2.0"
        # ...and on plain HTTP too (clients configured with http:// mirrors keep working).
        assert harness.request(http_port, "GET", "/v2/", host=mirror).status == 404


def test_registry_config_is_served_by_distribution_and_a_broken_one_is_refused(
    production_like, workdir
):
    _require("docker-registry")
    settings, _cert = production_like
    # Distribution 2.8 in proxy mode pings its upstream at start and panics when it cannot
    # reach it (a limit the units' Restart= covers): first that, then with a real upstream.
    call_command("edge_render")
    conf = Path(settings.EDGE_RUN_DIR) / "registry.yml"
    result = subprocess.run(
        [harness.which("docker-registry"), "serve", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0 and "connection refused" in result.stdout + result.stderr
    upstream = harness.start_registry(workdir / "upstream")
    settings.UPSTREAM_URL = upstream.url
    call_command("edge_render")
    port = int(settings.EDGE_REGISTRY_LISTEN.rsplit(":", 1)[1])
    reg = harness.Proc.start(
        "registry",
        [harness.which("docker-registry"), "serve", str(conf)],
        log=workdir / "registry.log",
    )
    try:
        harness.wait_port(port, proc=reg)
        resp = harness.request(port, "GET", "/v2/", host=f"127.0.0.1:{port}")
        assert resp.status == 200, resp.body
        assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    finally:
        reg.stop()
        upstream.stop()

    broken = workdir / "broken.yml"
    broken.write_text(conf.read_text().replace("filesystem:", "nosuchdriver:"))
    result = subprocess.run(
        [harness.which("docker-registry"), "serve", str(broken)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "nosuchdriver" in result.stdout + result.stderr


@pytest.mark.django_db(transaction=True)
def test_logrotate_renames_nginx_reopens_and_ingestion_counts_every_line_once(
    production_like, workdir
):
    _require("nginx", "logrotate")
    from ingest.models import EdgeIngest
    from ingest.services import ingest_edge

    settings, _cert = production_like
    run = render_all()
    conf = run / "logrotate.conf"
    assert conf.stat().st_mode & 0o777 == 0o640
    nginx = harness.Proc.start("nginx", harness.nginx_cmd(run), log=run / "logs" / "nginx.out")
    http_port = int(settings.EDGE_LISTEN.rsplit(":", 1)[1])
    access = Path(settings.EDGE_ACCESS_LOG)
    host = f"abcdefghijkl.{settings.MIRROR_DOMAIN}"
    try:
        harness.wait_port(http_port, proc=nginx)
        nginx_flush = harness.Edge(  # USR1, as the harness flushes an edge's log
            None, nginx, None, http_port, settings.MIRROR_DOMAIN
        )
        for _ in range(5):
            assert harness.request(http_port, "GET", "/v2/", host=host).status == 404
        nginx_flush.flush_log()
        ingest_edge(edge=settings.EDGE_NAME, path=access, enforce=False)
        # Two lines still sit in nginx's log buffer when logrotate renames the file: the
        # reopen flushes them into the renamed file, where ingestion finds them.
        for _ in range(2):
            assert harness.request(http_port, "GET", "/v2/", host=host).status == 404
        old_inode = access.stat().st_ino
        result = subprocess.run(
            [harness.which("logrotate"), "-f", "-s", str(workdir / "state"), str(conf)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        rotated = access.with_name("access.log.1")
        assert rotated.stat().st_ino == old_inode  # renamed, not copied
        # nginx reopened: a new file under the old name, receiving the new lines.
        deadline = time.monotonic() + 5
        while not access.exists():
            assert time.monotonic() < deadline, "nginx did not reopen its log"
            time.sleep(0.05)
        for _ in range(3):
            assert harness.request(http_port, "GET", "/v2/", host=host).status == 404
        nginx_flush.flush_log()
        assert len(rotated.read_text().splitlines()) == 7
        assert len(access.read_text().splitlines()) == 3
        assert not access.with_name("access.log.1.gz").exists()  # delaycompress

        for _ in range(2):  # a replay changes nothing
            ingest_edge(edge=settings.EDGE_NAME, path=access, enforce=False)
            row = EdgeIngest.objects.get(edge=settings.EDGE_NAME)
            assert (row.lines_total, row.malformed_total) == (10, 0)
    finally:
        nginx.stop()
