"""Rendering of the edge's generated files: nginx config, registry config, the gate map.

Pure code, no Django imports: the callers (edge/run_dir.py, edge/gate_sync.py, tests, bench)
pass values in.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from config.upstreams import DOCKER_HUB, NAME_RE, REPOSITORY_RE, URL_RE

PLACEHOLDER_RE = re.compile(r"@@([A-Z_]+)@@")
# What nginx may see as a gate map key: the lower-case DNS label the tenant map extracts.
MAP_LABEL_RE = re.compile(r"^[a-z0-9-]{1,63}$")
GATE_VALUES = frozenset({"active", "low", "suspended", "exhausted", "exhausted_all"})
_EDGE_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_DOMAIN_RE = re.compile(r"^[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63})*$")
_LISTEN_RE = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$")
_SIZE_RE = re.compile(r"^\d{1,6}[kKmM]?$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")


class EdgeConfigError(ValueError):
    """A setting that would produce a broken or unsafe edge configuration."""


@dataclass(frozen=True)
class UpstreamRoute:
    """A registry besides Docker Hub: its name (the lookup key clients send), its URL and
    the loopback address of its own pull-through registry."""

    name: str
    url: str
    registry_listen: str
    username: str = ""
    password: str = ""

    @property
    def backend(self) -> str:
        """nginx's upstream group for its registry: "-" as "__" and "." as "_" keeps distinct
        names distinct (a valid name never has "-" next to "." nor two dots in a row)."""
        return "registry_" + self.name.replace("-", "__").replace(".", "_")


@dataclass(frozen=True)
class EdgeParams:
    """Everything the generated files depend on."""

    name: str
    run_dir: Path
    access_log: Path
    listen: str  # host:port nginx listens on
    registry_listen: str  # host:port of the pull-through registry
    storage_dir: Path
    mirror_domain: str
    upstream_url: str
    upstream_username: str = ""
    upstream_password: str = ""
    worker_processes: str = "auto"
    proxy_buffer_size: str = "64k"
    # The blob cache and the fetch path of its misses (issue: one upstream read per blob).
    fetch_listen: str = "127.0.0.1:8481"
    token_listen: str = "127.0.0.1:8482"
    # The digest check every fill passes through, and the size of the cache's slices.
    verify_listen: str = "127.0.0.1:8484"
    slice_size: str = "8m"
    # The parent tier: a child's misses go to its parent edge (EDGE_PARENT_URL) before the
    # upstream; a parent serves its children on EDGE_CHILD_LISTEN. Both sides share a secret.
    parent_url: str = ""
    child_listen: str = ""
    parent_secret: str = ""
    # /healthz and nginx's stub_status, outside the gate (load balancers, the nginx exporter).
    health_listen: str = "127.0.0.1:8483"
    cache_dir: Path = Path("/var/cache/edge-blobs")
    cache_max_size: str = "10g"
    cache_inactive: str = "30d"
    # Old workers still serving downloads after a reload are closed after this long, so
    # reloads cannot pile up workers (at most one reload per gate-sync interval).
    worker_shutdown_seconds: int = 120
    # Sent by nginx to its fetch server and to the token helper, which refuse requests
    # without it: a local user of the edge host gets no blob and no upstream token. Lives in
    # EDGE_RUN_DIR/internal.secret and nginx.conf (both 0640).
    internal_secret: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)
    resolver: str = "127.0.0.1"
    ca_bundle: Path | None = None
    # HTTPS for clients (production: a wildcard certificate for *.MIRROR_DOMAIN).
    tls_listen: str = ""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Started as root, nginx runs its workers as this user (nginx's default: nobody).
    worker_user: str = ""
    # Per-tenant limits (issue 13): requests in progress at once, and rates (nginx's r/s or
    # r/m) with bursts for blob misses, HEADs and refused requests.
    tenant_connections: int = 16
    tenant_miss_rate: str = "2r/s"
    tenant_miss_burst: int = 120
    tenant_head_rate: str = "20r/s"
    tenant_head_burst: int = 200
    tenant_refusal_rate: str = "2r/s"
    tenant_refusal_burst: int = 30
    # The bandwidth cap (bounded overspend): bytes/s per download, GETs/s and burst per tenant;
    # the same near the end of the allowance (gate state low) and in the blob grace.
    tenant_rate: int = 6_250_000
    tenant_request_rate: int = 10
    tenant_request_burst: int = 50
    low_connections: int = 4
    low_rate: int = 1_000_000
    low_request_rate: int = 2
    low_request_burst: int = 10
    # The other registries (UPSTREAMS) and the operator's deny list (UPSTREAM_DENY entries,
    # "<registry>/<repository>").
    upstreams: tuple[UpstreamRoute, ...] = ()
    deny: tuple[str, ...] = ()

    def registry_names(self) -> list[str]:
        return [DOCKER_HUB, *(u.name for u in self.upstreams)]

    def validate(self) -> None:
        if not _EDGE_NAME_RE.match(self.name):
            raise EdgeConfigError(f"EDGE_NAME must match {_EDGE_NAME_RE.pattern}: {self.name!r}")
        if not _DOMAIN_RE.match(self.mirror_domain):
            raise EdgeConfigError(
                f"MIRROR_DOMAIN is not a lower-case DNS name: {self.mirror_domain!r}"
            )
        for key, setting in (
            ("listen", "EDGE_LISTEN"),
            ("registry_listen", "EDGE_REGISTRY_LISTEN"),
            ("fetch_listen", "EDGE_FETCH_LISTEN"),
            ("token_listen", "EDGE_TOKEN_LISTEN"),
            ("verify_listen", "EDGE_VERIFY_LISTEN"),
            ("health_listen", "EDGE_HEALTH_LISTEN"),
        ):
            if not _LISTEN_RE.match(getattr(self, key)):
                raise EdgeConfigError(f"{setting} must be host:port, not {getattr(self, key)!r}")
        for key, setting in (
            ("fetch_listen", "EDGE_FETCH_LISTEN"),
            ("token_listen", "EDGE_TOKEN_LISTEN"),
            ("verify_listen", "EDGE_VERIFY_LISTEN"),
        ):
            if not is_loopback(getattr(self, key)):
                raise EdgeConfigError(
                    f"{setting} must be a loopback address (127.0.0.1:port or [::1]:port), not "
                    f"{getattr(self, key)!r}: it serves blobs and upstream tokens to nginx alone"
                )
        if not re.match(r"^[A-Za-z0-9]{32,128}$", self.internal_secret):
            raise EdgeConfigError("the edge's internal secret must be 32-128 letters and digits")
        if not 1 <= self.worker_shutdown_seconds <= 86400:
            raise EdgeConfigError("EDGE_WORKER_SHUTDOWN_SECONDS must be between 1 and 86400")
        if not re.match(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?/?$", self.upstream_url):
            raise EdgeConfigError(
                f"UPSTREAM_URL must be an http(s) URL without a path: {self.upstream_url!r}"
            )
        if self.upstream_url.startswith("https://") and self.ca_bundle is None:
            raise EdgeConfigError(
                "UPSTREAM_URL is https but EDGE_UPSTREAM_CA_BUNDLE names no CA bundle file: "
                "the upstream's certificate would not be verified. Set EDGE_UPSTREAM_CA_BUNDLE "
                "to a PEM file of trusted CAs (Debian: /etc/ssl/certs/ca-certificates.crt)"
            )
        if bool(self.upstream_username) != bool(self.upstream_password):
            raise EdgeConfigError("set both UPSTREAM_USERNAME and UPSTREAM_PASSWORD, or neither")
        if self.parent_url and not re.match(
            r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?/?$", self.parent_url
        ):
            raise EdgeConfigError(
                f"EDGE_PARENT_URL must be an http(s) URL without a path: {self.parent_url!r}"
            )
        if self.child_listen and not _LISTEN_RE.match(self.child_listen):
            raise EdgeConfigError(f"EDGE_CHILD_LISTEN must be host:port: {self.child_listen!r}")
        if (self.parent_url or self.child_listen) and not _SECRET_RE.match(self.parent_secret):
            raise EdgeConfigError(
                "EDGE_PARENT_SECRET must be 32 to 128 letters, digits, '-' or '_' when "
                "EDGE_PARENT_URL or EDGE_CHILD_LISTEN is set"
            )
        if not (self.worker_processes == "auto" or self.worker_processes.isdigit()):
            raise EdgeConfigError("EDGE_WORKER_PROCESSES must be 'auto' or a number")
        if not _SIZE_RE.match(self.proxy_buffer_size):
            raise EdgeConfigError("EDGE_PROXY_BUFFER_SIZE must be a size such as 64k")
        if not slice_bytes_ok(self.slice_size):
            raise EdgeConfigError(
                f"EDGE_SLICE_SIZE must be a size from 256k to 1024m such as 8m: {self.slice_size!r}"
            )
        if not re.match(r"^\d{1,12}[kKmMgG]?$", self.cache_max_size):
            raise EdgeConfigError("EDGE_CACHE_MAX_SIZE must be a size such as 10g")
        if not re.match(r"^\d{1,9}[smhdwMy]?$", self.cache_inactive):
            raise EdgeConfigError("EDGE_CACHE_INACTIVE must be a time such as 30d")
        if not re.match(r"^[0-9A-Za-z.:\[\]-]+( [0-9A-Za-z.:\[\]-]+)*$", self.resolver):
            raise EdgeConfigError(f"EDGE_RESOLVER must be addresses: {self.resolver!r}")
        if not 1 <= self.tenant_connections <= 100000:
            raise EdgeConfigError("EDGE_TENANT_CONNECTIONS must be between 1 and 100000")
        for key in ("tenant_rate", "low_rate"):
            if not 1 <= getattr(self, key) <= 10**12:
                raise EdgeConfigError(f"EDGE_{key.upper()} must be 1 to 10^12 bytes per second")
        for key in ("tenant_request_rate", "low_request_rate", "low_connections"):
            if not 1 <= getattr(self, key) <= 100000:
                raise EdgeConfigError(f"EDGE_{key.upper()} must be between 1 and 100000")
        for key in ("tenant_request_burst", "low_request_burst"):
            if not 0 <= getattr(self, key) <= 100000:
                raise EdgeConfigError(f"EDGE_{key.upper()} must be 0 to 100000")
        for kind in ("miss", "head", "refusal"):
            rate, burst = (
                getattr(self, f"tenant_{kind}_rate"),
                getattr(self, f"tenant_{kind}_burst"),
            )
            if not re.match(r"^[1-9]\d{0,5}r/[sm]$", rate):
                raise EdgeConfigError(f"EDGE_TENANT_{kind.upper()}_RATE must be like 2r/s or 30r/m")
            if not 0 <= burst <= 100000:
                raise EdgeConfigError(f"EDGE_TENANT_{kind.upper()}_BURST must be 0 to 100000")
        self._validate_upstreams()
        if self.worker_user and not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", self.worker_user):
            raise EdgeConfigError(f"EDGE_WORKER_USER is not a user name: {self.worker_user!r}")
        if self.tls_listen:
            if not _LISTEN_RE.match(self.tls_listen):
                raise EdgeConfigError(f"EDGE_TLS_LISTEN must be host:port: {self.tls_listen!r}")
            if not (self.tls_cert and self.tls_key):
                raise EdgeConfigError("EDGE_TLS_LISTEN needs EDGE_TLS_CERT and EDGE_TLS_KEY")
        paths = [self.run_dir, self.access_log, self.storage_dir, self.cache_dir]
        optional = [self.ca_bundle, self.tls_cert, self.tls_key]
        for path in paths + [p for p in optional if p]:
            if any(c in str(path) for c in " ;'\"{}$\n"):
                raise EdgeConfigError(f"paths must not contain spaces or nginx syntax: {path}")

    def _validate_upstreams(self) -> None:
        names = self.registry_names()
        if len(set(names)) != len(names):
            raise EdgeConfigError("UPSTREAMS: every registry name must be unique (docker.io too)")
        listens = [self.registry_listen, *(u.registry_listen for u in self.upstreams)]
        if len(set(listens)) != len(listens):
            raise EdgeConfigError("every upstream's registry needs its own listen address")
        for up in self.upstreams:
            if not NAME_RE.match(up.name):
                raise EdgeConfigError(f"UPSTREAMS: {up.name!r} is not a registry host name")
            if not URL_RE.match(up.url):
                raise EdgeConfigError(f"UPSTREAMS: {up.name}'s url is not http(s)://host[:port]")
            if not _LISTEN_RE.match(up.registry_listen):
                raise EdgeConfigError(f"{up.name}'s registry listen must be host:port")
            if bool(up.username) != bool(up.password):
                raise EdgeConfigError(f"{up.name}: set both username and password, or neither")
        if self.ca_bundle is None and any(u.url.startswith("https://") for u in self.upstreams):
            raise EdgeConfigError(
                "UPSTREAMS has https upstreams but EDGE_UPSTREAM_CA_BUNDLE names no CA bundle "
                "file: their certificates would not be verified"
            )
        for entry in self.deny:
            name, _, repository = entry.partition("/")
            if name not in names or not REPOSITORY_RE.match(repository):
                raise EdgeConfigError(f"UPSTREAM_DENY: {entry!r} is not <registry>/<repository>")


def is_loopback(listen: str) -> bool:
    """Whether a host:port listens on a loopback address only (no names: they may resolve to
    anything, and 0.0.0.0 or [::] listen everywhere)."""
    host = listen.rpartition(":")[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def slice_bytes(text: str) -> int:
    """EDGE_SLICE_SIZE in bytes (nginx's syntax: 8m, 512k)."""
    match = re.match(r"^(\d{1,9})([kKmM]?)$", text)
    if not match:
        raise EdgeConfigError(f"EDGE_SLICE_SIZE must be a size such as 8m: {text!r}")
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]


def slice_bytes_ok(text: str) -> bool:
    # Small slices mean many cache files and requests per blob; large ones, long waits for
    # clients joining a fill.
    try:
        return 256 * 1024 <= slice_bytes(text) <= 1024 * 1024 * 1024
    except EdgeConfigError:
        return False


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace every @@NAME@@; a placeholder without a value is an error, never left in."""

    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise EdgeConfigError(f"template placeholder @@{key}@@ has no value")
        return values[key]

    return PLACEHOLDER_RE.sub(one, template)


def nginx_conf(template: str, params: EdgeParams) -> str:
    params.validate()
    return fill(
        template,
        {
            "RUN_DIR": str(params.run_dir),
            "ACCESS_LOG": str(params.access_log),
            "EDGE_NAME": params.name,
            "EDGE_LISTEN": params.listen,
            "EDGE_REGISTRY_LISTEN": params.registry_listen,
            "MIRROR_DOMAIN": params.mirror_domain,
            "MIRROR_DOMAIN_RE": params.mirror_domain.replace(".", r"\."),
            "WORKER_PROCESSES": params.worker_processes,
            "WORKER_SHUTDOWN_TIMEOUT": str(params.worker_shutdown_seconds),
            "INTERNAL_SECRET": params.internal_secret,
            "PROXY_BUFFER_SIZE": params.proxy_buffer_size,
            "FETCH_LISTEN": params.fetch_listen,
            "TOKEN_LISTEN": params.token_listen,
            "VERIFY_LISTEN": params.verify_listen,
            "SLICE_SIZE": str(slice_bytes(params.slice_size)),
            "PARENT_FETCH": _parent_fetch(params),
            "CHILD_SERVER": _child_server(params),
            "HEALTH_LISTEN": params.health_listen,
            "CACHE_DIR": str(params.cache_dir),
            "CACHE_MAX_SIZE": params.cache_max_size,
            "CACHE_INACTIVE": params.cache_inactive,
            "RESOLVER": params.resolver,
            "UPSTREAM_URL": params.upstream_url.rstrip("/"),
            "UPSTREAM_TLS": _upstream_tls(params.ca_bundle),
            "TLS": _client_tls(params),
            "WORKER_USER": f"user {params.worker_user};" if params.worker_user else "",
            "TENANT_CONNECTIONS": str(params.tenant_connections),
            "TENANT_MISS_RATE": params.tenant_miss_rate,
            "TENANT_MISS_BURST": str(params.tenant_miss_burst),
            "TENANT_HEAD_RATE": params.tenant_head_rate,
            "TENANT_HEAD_BURST": str(params.tenant_head_burst),
            "TENANT_REFUSAL_RATE": params.tenant_refusal_rate,
            "TENANT_REFUSAL_BURST": str(params.tenant_refusal_burst),
            "TENANT_RATE": str(params.tenant_rate),
            "TENANT_REQUEST_RATE": str(params.tenant_request_rate),
            "TENANT_REQUEST_BURST": str(params.tenant_request_burst),
            "LOW_CONNECTIONS": str(params.low_connections),
            "LOW_RATE": str(params.low_rate),
            "LOW_REQUEST_RATE": str(params.low_request_rate),
            "LOW_REQUEST_BURST": str(params.low_request_burst),
            **_registry_routing(params),
        },
    )


def _nginx_re(text: str) -> str:
    return re.escape(text).replace('"', "")


def _registry_routing(params: EdgeParams) -> dict[str, str]:
    """The map entries and upstream groups that route each registry name (names are
    validated: DNS characters only, safe inside nginx's quotes and regexes)."""
    i4, i8 = " " * 8, " " * 4
    registry, backend, fetch, groups, deny = [], [], [], [], []
    for name in params.registry_names():
        # ns= names it (the path is then the repository as it is), or the path prefix does.
        registry.append(f'{i4}"~^{_nginx_re(name)}\\|[^|]*$" {name};')
        registry.append(f'{i4}"|{name}" {name};')
    for up in params.upstreams:
        backend.append(f"{i4}{up.name} {up.backend};")
        fetch.append(f'{i4}{up.name} "{up.url.rstrip("/")}";')
        groups.append(
            f"{i8}upstream {up.backend} {{\n{i4}server {up.registry_listen};\n"
            f"{i4}keepalive 16;\n{i8}}}"
        )
    for entry in params.deny:
        name, _, repository = entry.partition("/")
        pattern = f"^{_nginx_re(name)}:/v2/{_nginx_re(repository)}/(?:manifests|blobs|tags)/"
        deny.append(f'{i4}"~{pattern}" 1;')
    none = f"{i4}# none"
    return {
        "REGISTRY_MAP": "\n".join(registry),
        "REGISTRY_BACKEND_MAP": "\n".join(backend) or none,
        "FETCH_UPSTREAM_MAP": "\n".join(fetch) or none,
        "REGISTRY_UPSTREAMS": "\n".join(groups) or f"{i8}# no other registries (UPSTREAMS)",
        "DENY_MAP": "\n".join(deny) or none,
    }


def _parent_fetch(params: EdgeParams) -> str:
    """The fetch server's first try for a miss: the parent edge, or straight the upstream."""
    indent = " " * 12
    if not params.parent_url:
        lines = [
            "# No parent edge (EDGE_PARENT_URL): straight to the upstream. try_files acts",
            "# after the miss limit above (a `return` would come before it).",
            f"root {params.run_dir}/refusals-have-no-files;",
            "try_files /none @upstream;",
        ]
    else:
        lines = [
            "# The parent edge first (EDGE_PARENT_URL): a fleet of edges reads the upstream",
            "# once per blob. Parent down, failing or refusing: the upstream directly.",
            f"proxy_pass {params.parent_url.rstrip('/')};",
            "proxy_http_version 1.1;",
            'proxy_set_header Connection "";',
            "proxy_set_header Host $proxy_host;",
            f'proxy_set_header X-Edge-Parent-Secret "{params.parent_secret}";',
            'proxy_set_header Authorization "";',
            'proxy_set_header Cookie "";',
            'proxy_set_header X-Forwarded-For "";',
            # The parent has its own internal secret: this edge's never leaves it.
            'proxy_set_header X-Edge-Secret "";',
            'proxy_set_header X-Edge-Tenant "";',
            "proxy_ssl_server_name on;",
            *[line.strip() for line in _upstream_tls(params.ca_bundle).splitlines()],
            "proxy_buffering off;",
            "proxy_connect_timeout 3s;",
            "proxy_read_timeout 300s;",
            "proxy_intercept_errors on;",
            "error_page 403 500 502 503 504 = @upstream;",
            "# The upstream's redirects still go to @follow after that error page.",
            "recursive_error_pages on;",
        ]
    return "\n".join(indent + line for line in lines)


def _child_server(params: EdgeParams) -> str:
    """A parent's listener for its child edges: their misses, from this edge's blob cache
    (filled like a tenant's miss). Its log is for operators: never ingested, never charged."""
    if not params.child_listen:
        return "    # Not a parent edge (EDGE_CHILD_LISTEN is empty)."
    tls = ""
    if params.tls_cert and params.tls_key:
        tls = (
            f" ssl;\n        ssl_certificate {params.tls_cert};\n"
            f"        ssl_certificate_key {params.tls_key};\n"
            "        ssl_protocols TLSv1.2 TLSv1.3"
        )
    blob = (
        r'"^/v2/(?<blob_repo>[a-z0-9][a-z0-9._/-]*)/blobs/'
        r'(?<blob_digest>sha256:[a-f0-9]{64})$"'
    )
    ignore = "Cache-Control Expires Set-Cookie Vary X-Accel-Expires X-Accel-Buffering"
    return f"""    # Children (EDGE_CHILD_LISTEN): their misses, from this edge's blob cache.
    # Only requests carrying EDGE_PARENT_SECRET; their log is not the ingested access log.
    server {{
        listen {params.child_listen}{tls};
        access_log {params.run_dir}/logs/children.log edge_json buffer=16k flush=2s;
        # A slice cut short must reach the child at once (see the tenant blob location).
        keepalive_timeout 0;
        client_max_body_size 16k;
        location ~ {blob} {{
            if ($http_x_edge_parent_secret != "{params.parent_secret}") {{
                return 403;
            }}
            # The registry the child routed to (ns=, always set by a child's fetch path): an
            # unknown or denied one is refused here, before anything is dialled.
            if ($registry_refusal) {{
                return 404;
            }}
            limit_except GET {{
                deny all;
            }}
            proxy_pass http://blob_verify$registry_path?ns=$registry;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header Authorization "";
            proxy_set_header Cookie "";
            proxy_set_header X-Edge-Parent-Secret "";
            # This edge's own secret, which its digest check passes on to its fetch server.
            proxy_set_header X-Edge-Secret "{params.internal_secret}";
            proxy_set_header X-Request-Id $request_id;
            proxy_set_header X-Edge-Tenant "";
            slice {slice_bytes(params.slice_size)};
            proxy_set_header Range $slice_range;
            proxy_cache edge_blobs;
            proxy_cache_key $blob_digest$slice_range;
            proxy_cache_valid 200 206 3650d;
            # As on the tenants' server: the digest check shares fills, the joiners do not cache.
            proxy_no_cache $blob_no_length $upstream_http_x_edge_joined;
            proxy_hide_header X-Edge-Joined;
            proxy_ignore_headers {ignore};
            proxy_cache_lock off;
            proxy_buffering on;
            proxy_buffer_size {params.proxy_buffer_size};
            proxy_buffers 16 {params.proxy_buffer_size};
            proxy_busy_buffers_size {params.proxy_buffer_size};
            proxy_connect_timeout 5s;
            proxy_read_timeout 300s;
            sendfile on;
            tcp_nopush on;
            proxy_hide_header X-Upstream-Authorization;
        }}
        location / {{
            return 404;
        }}
    }}"""


def _client_tls(params: EdgeParams) -> str:
    if not params.tls_listen:
        return "        # no HTTPS listener (EDGE_TLS_LISTEN is empty)"
    indent = " " * 8
    return "\n".join(
        indent + line
        for line in [
            f"listen {params.tls_listen} ssl default_server;",
            f"ssl_certificate {params.tls_cert};",
            f"ssl_certificate_key {params.tls_key};",
            "ssl_protocols TLSv1.2 TLSv1.3;",
            "ssl_session_cache shared:edge_tls:10m;",
            "ssl_session_timeout 1h;",
        ]
    )


def _upstream_tls(ca_bundle: Path | None) -> str:
    indent = " " * 12
    if ca_bundle is None:
        # Only for a plain-http upstream: validate() refuses https without a CA bundle.
        return f"{indent}# plain-http upstream: no TLS to verify"
    return (
        f"{indent}proxy_ssl_verify on;\n"
        f"{indent}proxy_ssl_verify_depth 4;\n"
        f"{indent}proxy_ssl_trusted_certificate {ca_bundle};"
    )


def first_nameserver(resolv_conf: str) -> str | None:
    """The first nameserver of a resolv.conf text (nginx needs one to follow redirects)."""
    for line in resolv_conf.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            addr = parts[1]
            return f"[{addr}]" if ":" in addr else addr
    return None


def registry_conf(
    template: str, params: EdgeParams, *, http_secret: str, upstream: UpstreamRoute | None = None
) -> str:
    """Docker Hub's pull-through registry, or with ``upstream`` that registry's (its storage
    under the storage directory's upstreams/<name>, which Distribution's own tree never uses)."""
    params.validate()
    url, username, password = (
        params.upstream_url,
        params.upstream_username,
        params.upstream_password,
    )
    listen, storage = params.registry_listen, params.storage_dir
    if upstream is not None:
        url, username, password = upstream.url, upstream.username, upstream.password
        listen, storage = upstream.registry_listen, upstream_storage(params, upstream)
    credentials = ""
    if username:
        # JSON strings are valid YAML double-quoted scalars: any password survives quoting.
        credentials = f"  username: {json.dumps(username)}\n  password: {json.dumps(password)}\n"
    return fill(
        template,
        {
            "EDGE_NAME": params.name,
            "STORAGE_DIR": json.dumps(str(storage)),
            "EDGE_REGISTRY_LISTEN": listen,
            "HTTP_SECRET": json.dumps(http_secret),
            "UPSTREAM_URL": json.dumps(url),
            "UPSTREAM_CREDENTIALS": credentials,
        },
    )


def upstream_storage(params: EdgeParams, upstream: UpstreamRoute) -> Path:
    return params.storage_dir / "upstreams" / upstream.name


def registry_conf_name(upstream: UpstreamRoute | None) -> str:
    """registry.yml for Docker Hub's registry, registry-<name>.yml for another's."""
    return "registry.yml" if upstream is None else f"registry-{upstream.name}.yml"


def gate_map(table: Mapping[str, str]) -> tuple[str, list[str]]:
    """The nginx map body for a gate table, and the labels left out as unusable.

    Sorted, so the same table always gives the same bytes (the sync compares contents to
    decide whether nginx must reload). Labels are lower-cased: host names are case-insensitive
    and nginx matches the lower-cased $host.
    """
    lines = ["# Generated by manage.py edge_sync from accelerator.gate.gate_table(); do not edit."]
    skipped: list[str] = []
    for label in sorted(table):
        key, value = label.lower(), str(table[label])
        if not MAP_LABEL_RE.match(key) or value not in GATE_VALUES:
            skipped.append(label)
            continue
        lines.append(f"{key} {value};")
    return "\n".join(lines) + "\n", skipped
