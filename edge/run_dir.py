"""The edge's run directory (EDGE_RUN_DIR): its files, and rendering nginx.conf and
registry.yml into it from settings and the templates in deploy/ (`manage.py edge_render`).

The gate map in it is written by edge/gate_sync.py; this module only creates an empty one
when there is none.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

from django.conf import settings

from edge import render

logger = logging.getLogger(__name__)

DEPLOY_DIR = Path(settings.BASE_DIR) / "deploy"
NGINX_TEMPLATE = DEPLOY_DIR / "nginx" / "edge.conf.template"
REGISTRY_TEMPLATE = DEPLOY_DIR / "registry" / "proxy.yml.template"


def edge_params() -> render.EdgeParams:
    return render.EdgeParams(
        name=settings.EDGE_NAME,
        run_dir=Path(settings.EDGE_RUN_DIR).resolve(),
        access_log=Path(settings.EDGE_ACCESS_LOG).resolve(),
        listen=settings.EDGE_LISTEN,
        registry_listen=settings.EDGE_REGISTRY_LISTEN,
        storage_dir=Path(settings.EDGE_REGISTRY_STORAGE_DIR).resolve(),
        mirror_domain=settings.MIRROR_DOMAIN,
        upstream_url=settings.UPSTREAM_URL,
        upstream_username=settings.UPSTREAM_USERNAME,
        upstream_password=settings.UPSTREAM_PASSWORD,
        worker_processes=settings.EDGE_WORKER_PROCESSES,
        proxy_buffer_size=settings.EDGE_PROXY_BUFFER_SIZE,
        fetch_listen=settings.EDGE_FETCH_LISTEN,
        token_listen=settings.EDGE_TOKEN_LISTEN,
        verify_listen=settings.EDGE_VERIFY_LISTEN,
        slice_size=settings.EDGE_SLICE_SIZE,
        parent_url=settings.EDGE_PARENT_URL,
        child_listen=settings.EDGE_CHILD_LISTEN,
        parent_secret=settings.EDGE_PARENT_SECRET,
        health_listen=settings.EDGE_HEALTH_LISTEN,
        cache_dir=Path(settings.EDGE_CACHE_DIR).resolve(),
        cache_max_size=settings.EDGE_CACHE_MAX_SIZE,
        cache_inactive=settings.EDGE_CACHE_INACTIVE,
        worker_shutdown_seconds=settings.EDGE_WORKER_SHUTDOWN_SECONDS,
        resolver=settings.EDGE_RESOLVER or _system_resolver(),
        ca_bundle=_ca_bundle(),
        tls_listen=settings.EDGE_TLS_LISTEN,
        tls_cert=Path(settings.EDGE_TLS_CERT) if settings.EDGE_TLS_CERT else None,
        tls_key=Path(settings.EDGE_TLS_KEY) if settings.EDGE_TLS_KEY else None,
        worker_user=settings.EDGE_WORKER_USER,
        tenant_connections=settings.EDGE_TENANT_CONNECTIONS,
        tenant_miss_rate=settings.EDGE_TENANT_MISS_RATE,
        tenant_miss_burst=settings.EDGE_TENANT_MISS_BURST,
        tenant_head_rate=settings.EDGE_TENANT_HEAD_RATE,
        tenant_head_burst=settings.EDGE_TENANT_HEAD_BURST,
        tenant_refusal_rate=settings.EDGE_TENANT_REFUSAL_RATE,
        tenant_refusal_burst=settings.EDGE_TENANT_REFUSAL_BURST,
        tenant_rate=settings.EDGE_TENANT_RATE,
        tenant_request_rate=settings.EDGE_TENANT_REQUEST_RATE,
        tenant_request_burst=settings.EDGE_TENANT_REQUEST_BURST,
        low_connections=settings.EDGE_LOW_CONNECTIONS,
        low_rate=settings.EDGE_LOW_RATE,
        low_request_rate=settings.EDGE_LOW_REQUEST_RATE,
        low_request_burst=settings.EDGE_LOW_REQUEST_BURST,
        upstreams=upstream_routes(),
        deny=tuple(settings.UPSTREAM_DENY),
    )


def upstream_routes() -> tuple[render.UpstreamRoute, ...]:
    """UPSTREAMS with their registries' addresses: EDGE_REGISTRY_LISTEN's port + 1, + 2, ..."""
    host, _, port = settings.EDGE_REGISTRY_LISTEN.rpartition(":")
    if not port.isdigit():
        raise render.EdgeConfigError("EDGE_REGISTRY_LISTEN must be host:port")
    return tuple(
        render.UpstreamRoute(
            name=up.name,
            url=up.url,
            registry_listen=f"{host}:{int(port) + i}",
            username=up.username,
            password=up.password,
        )
        for i, up in enumerate(settings.UPSTREAMS, start=1)
    )


def _check_worker_access(params: render.EdgeParams) -> None:
    """Started as root, nginx's workers run as another user (nobody by default): they read and
    write the blob cache and reopen the logs, so every directory on the way must be open to
    them. Fail at render time with the fix, rather than with 500s at the first pull."""
    if os.geteuid() != 0 or params.worker_user == "root":
        return
    for target in (params.cache_dir, params.access_log.parent):
        for directory in [target, *target.parents]:
            if directory.exists() and not directory.stat().st_mode & 0o001:
                raise render.EdgeConfigError(
                    f"nginx's workers (user {params.worker_user or 'nobody'}) cannot reach "
                    f"{target}: {directory} is not searchable by others. Use a VAR_DIR / "
                    f"EDGE_CACHE_DIR outside it, `chmod o+x {directory}`, or set "
                    "EDGE_WORKER_USER."
                )


def _system_resolver() -> str:
    try:
        text = Path("/etc/resolv.conf").read_text()
    except OSError:
        text = ""
    return render.first_nameserver(text) or "127.0.0.1"


def _ca_bundle() -> Path | None:
    """The upstream's CA bundle; None for a plain-http upstream without one. An https upstream
    without a readable bundle is refused (render.EdgeParams.validate names the setting)."""
    path = Path(settings.EDGE_UPSTREAM_CA_BUNDLE) if settings.EDGE_UPSTREAM_CA_BUNDLE else None
    if path is not None and not path.is_file():
        if settings.UPSTREAM_URL.startswith("https://"):
            raise render.EdgeConfigError(
                f"EDGE_UPSTREAM_CA_BUNDLE {path} is not a file: the upstream's certificate "
                "could not be verified (set it to a PEM file of trusted CAs)"
            )
        return None
    return path


@dataclass(frozen=True)
class EdgeFiles:
    run_dir: Path
    nginx_conf: Path
    registry_conf: Path
    gate_map: Path
    pid_file: Path
    error_log: Path
    # The digest of the gate map nginx was last told to load (its mtime: that reload's time).
    gate_loaded: Path
    # The per-edge secret nginx's fetch server and the token helper require (0640).
    internal_secret: Path


def edge_files(run_dir: Path) -> EdgeFiles:
    return EdgeFiles(
        run_dir=run_dir,
        nginx_conf=run_dir / "nginx.conf",
        registry_conf=run_dir / "registry.yml",
        gate_map=run_dir / "gate.map",
        pid_file=run_dir / "nginx.pid",
        error_log=run_dir / "logs" / "error.log",
        gate_loaded=run_dir / "gate.loaded",
        internal_secret=run_dir / "internal.secret",
    )


def write_atomic(path: Path, text: str, mode: int = 0o640) -> None:
    """Replace path with text. 0640 by default: the edge's files hold every label (gate.map)
    and its internal secret (nginx.conf); nginx reads them as their owner."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def edge_render(*, params: render.EdgeParams | None = None) -> EdgeFiles:
    """Write nginx.conf, registry.yml and (if absent) an empty gate map. Idempotent.

    The gate map is left alone when it exists: it is the last known state, and an edge that
    restarts while the database is down must come back with it.
    """
    params = params or edge_params()
    params.validate()  # a bad setting is named before any directory is looked at
    files = edge_files(params.run_dir)
    _check_worker_access(params)
    for sub in ("logs", "tmp"):
        (params.run_dir / sub).mkdir(parents=True, exist_ok=True)
    params = replace(params, internal_secret=internal_secret(files))
    params.access_log.parent.mkdir(parents=True, exist_ok=True)
    # nginx creates a missing log 0644 (less its umask); created here, it keeps 0640.
    for log in (params.access_log, files.error_log, params.run_dir / "logs" / "fetch.log"):
        if not log.exists():
            log.touch(mode=0o640)
            log.chmod(0o640)
    params.storage_dir.mkdir(parents=True, exist_ok=True)
    params.cache_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(files.nginx_conf, render.nginx_conf(NGINX_TEMPLATE.read_text(), params))
    # 0600: they may hold upstream passwords. One registry per upstream; a removed upstream's
    # file goes, so the registries started from registry*.yml are exactly the configured ones.
    template = REGISTRY_TEMPLATE.read_text()
    wanted = set()
    for upstream in (None, *params.upstreams):
        if upstream is not None:
            render.upstream_storage(params, upstream).mkdir(parents=True, exist_ok=True)
        path = params.run_dir / render.registry_conf_name(upstream)
        wanted.add(path.name)
        conf = render.registry_conf(
            template, params, http_secret=secrets.token_hex(16), upstream=upstream
        )
        write_atomic(path, conf, mode=0o600)
    for stale in params.run_dir.glob("registry-*.yml"):
        if stale.name not in wanted:
            stale.unlink()
    if not files.gate_map.exists():
        write_atomic(files.gate_map, render.gate_map({})[0])
    return files


def internal_secret(files: EdgeFiles) -> str:
    """The edge's internal secret, created once (0640) and kept across renders: the token
    helper, started separately, must go on matching the nginx.conf rendered next."""
    try:
        return files.internal_secret.read_text().strip()
    except FileNotFoundError:
        files.run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(files.internal_secret, secrets.token_hex(32) + "\n")
        return files.internal_secret.read_text().strip()
