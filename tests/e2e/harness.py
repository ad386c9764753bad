"""Processes and images for end-to-end tests and benchmarks of the edge. No pytest, no Django.

Everything listens on 127.0.0.1 with ports picked by the kernel; every process started here is
stopped by its owner (the fixture or the bench) by pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from edge import render as edge_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

MT_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ACCEPT_ALL = [
    MT_MANIFEST,
    MT_LIST,
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
]


def which(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, *, timeout: float = 15.0, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- processes ---------------------------------------------------------------------------------


@dataclass
class Proc:
    """A child process with its output in a log file; stop() ends it by pid, then waits."""

    name: str
    popen: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, name: str, cmd: Sequence[str], *, log: Path, env: dict | None = None) -> Proc:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                list(cmd),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        return cls(name=name, popen=popen, log=log)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.popen.pid, sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def child_pids(pid: int) -> set[int]:
    """Direct children of pid, read from /proc (nginx workers of a master)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command may contain spaces and parentheses: fields start after the last ')'
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


# --- HTTP ----------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)


def request(
    port: int,
    method: str,
    path: str,
    *,
    host: str | bytes | None = None,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
    timeout: float = 30.0,
) -> Response:
    """One HTTP/1.1 request to 127.0.0.1:port with exactly the Host given (None: no Host)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def raw_request(port: int, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send raw bytes, return everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        s.sendall(data)
        chunks = []
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := s.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


# --- images ----------------------------------------------------------------------------------


@dataclass
class Blob:
    digest: str
    data: bytes
    media_type: str

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class Image:
    """One platform image: config and layers, with its schema 2 manifest."""

    config: Blob
    layers: list[Blob]
    manifest: bytes
    digest: str

    @property
    def blobs(self) -> list[Blob]:
        return [self.config, *self.layers]


@dataclass
class ImageIndex:
    """A manifest list (several platforms under one tag)."""

    images: dict[str, Image]  # architecture -> image
    manifest: bytes
    digest: str


def make_layer(files: dict[str, bytes]) -> tuple[Blob, str]:
    """A gzipped tar layer and its diff id (digest of the uncompressed tar)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    gz = gzip.compress(raw, compresslevel=1, mtime=0)
    return Blob(sha256_digest(gz), gz, MT_LAYER), sha256_digest(raw)


def make_image(*, files: dict[str, bytes], arch: str = "amd64", note: str = "") -> Image:
    layer, diff_id = make_layer(files)
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": ["/hello"], "Labels": {"e2e.note": note}},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "tests/e2e"}],
        },
        sort_keys=True,
    ).encode()
    config_blob = Blob(sha256_digest(config), config, MT_CONFIG)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "size": len(config), "digest": config_blob.digest},
            "layers": [{"mediaType": MT_LAYER, "size": layer.size, "digest": layer.digest}],
        },
        indent=3,
    ).encode()
    return Image(config_blob, [layer], manifest, sha256_digest(manifest))


def make_index(images: dict[str, Image]) -> ImageIndex:
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MT_LIST,
            "manifests": [
                {
                    "mediaType": MT_MANIFEST,
                    "size": len(img.manifest),
                    "digest": img.digest,
                    "platform": {"architecture": arch, "os": "linux"},
                }
                for arch, img in images.items()
            ],
        },
        indent=3,
    ).encode()
    return ImageIndex(images, manifest, sha256_digest(manifest))


def host_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


def _push_blob(port: int, repo: str, blob: Blob) -> None:
    if request(port, "HEAD", f"/v2/{repo}/blobs/{blob.digest}", host="upstream").status == 200:
        return
    start = request(port, "POST", f"/v2/{repo}/blobs/uploads/", host="upstream", body=b"")
    assert start.status == 202, (start.status, start.body)
    loc = urlsplit(start.headers["Location"])
    path = (
        f"{loc.path}?{loc.query}&digest={blob.digest}"
        if loc.query
        else f"{loc.path}?digest={blob.digest}"
    )
    done = request(
        port,
        "PUT",
        path,
        host="upstream",
        headers=[("Content-Type", "application/octet-stream")],
        body=blob.data,
        timeout=120,
    )
    assert done.status == 201, (done.status, done.body)


def _push_manifest(port: int, repo: str, ref: str, body: bytes, media_type: str) -> None:
    resp = request(
        port,
        "PUT",
        f"/v2/{repo}/manifests/{ref}",
        host="upstream",
        headers=[("Content-Type", media_type)],
        body=body,
    )
    assert resp.status == 201, (resp.status, resp.body)


def push_image(port: int, repo: str, tag: str, image: Image | ImageIndex) -> None:
    """Push over plain HTTP to a Distribution registry on 127.0.0.1:port."""
    if isinstance(image, ImageIndex):
        for img in image.images.values():
            push_image(port, repo, img.digest, img)
        _push_manifest(port, repo, tag, image.manifest, MT_LIST)
        return
    for blob in image.blobs:
        _push_blob(port, repo, blob)
    _push_manifest(port, repo, tag, image.manifest, MT_MANIFEST)


# --- registries ---------------------------------------------------------------------------------

REGISTRY_PLAIN = """version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: false
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
"""


@dataclass
class Registry:
    """A Distribution registry (plain: the test's 'Docker Hub'; or the edge's proxy)."""

    proc: Proc
    port: int
    storage: Path
    config: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.stop()

    def blob_reads(self, digest: str) -> int:
        """How many complete GETs of this blob the registry answered, from its access log."""
        needle = '"GET /v2/'
        return sum(
            1
            for line in self.proc.log_tail(10**9).splitlines()
            if needle in line and f"/blobs/{digest} " in line and '" 200 ' in line
        )

    def blob_bytes(self, digest: str) -> int:
        """Body bytes of this blob the registry sent in 200 and 206 answers (the edge's cache
        fills in slices, each a 206), from its access log."""
        pattern = re.compile(rf'"GET /v2/\S+/blobs/{digest} HTTP/[0-9.]+" 20[06] (\d+) ')
        return sum(
            int(found.group(1))
            for line in self.proc.log_tail(10**9).splitlines()
            if (found := pattern.search(line))
        )


def start_registry(workdir: Path, *, name: str = "upstream") -> Registry:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    storage = workdir / "storage"
    config = workdir / "registry.yml"
    config.write_text(REGISTRY_PLAIN.format(storage=json.dumps(str(storage)), port=port))
    proc = Proc.start(
        name, [which("docker-registry"), "serve", str(config)], log=workdir / "registry.log"
    )
    wait_port(port, proc=proc)
    return Registry(proc, port, storage, config)


# --- the edge --------------------------------------------------------------------------------


@dataclass
class Edge:
    """nginx with the rendered edge config, in front of Distribution in proxy mode."""

    params: edge_config.EdgeParams
    nginx: Proc
    registry: Registry
    port: int
    mirror_domain: str
    name: str = field(default="")
    token: Proc | None = None
    # The pull-through registry of each registry in UPSTREAMS, by name.
    upstream_registries: dict[str, Registry] = field(default_factory=dict)
    verify: Proc | None = None
    owns_registry: bool = True  # False for start_sibling_edge's: the registry is another's

    @property
    def run_dir(self) -> Path:
        return self.params.run_dir

    @property
    def access_log(self) -> Path:
        return self.params.access_log

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "nginx.pid"

    def host(self, label: str, *, port: bool = True) -> str:
        return f"{label}.{self.mirror_domain}" + (f":{self.port}" if port else "")

    def url(self, label: str) -> str:
        return f"http://{self.host(label)}"

    def get(self, label: str, path: str, method: str = "GET", **kw) -> Response:
        return request(self.port, method, path, host=self.host(label), **kw)

    def write_gate_map(self, table: dict[str, str]) -> None:
        """For benches without a database: a fixed table, rendered like the real sync does."""
        (self.run_dir / "gate.map").write_text(edge_config.gate_map(table)[0])
        self.reload()

    def reload(self) -> None:
        """SIGHUP nginx and wait until the old workers are gone and new ones serve."""
        old = child_pids(self.nginx.pid)
        os.kill(self.nginx.pid, signal.SIGHUP)
        self.wait_reloaded(old)

    def wait_reloaded(self, old: set[int], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = child_pids(self.nginx.pid)
            if now and not (now & old):
                return
            time.sleep(0.02)
        raise TimeoutError(f"nginx did not reload within {timeout}s:\n{self.nginx.log_tail()}")

    def flush_log(self) -> None:
        """Make nginx write its buffered access log now (USR1 reopens the log files)."""
        os.kill(self.nginx.pid, signal.SIGUSR1)
        time.sleep(0.3)

    def log_lines(self) -> list[dict]:
        self.flush_log()
        if not self.access_log.exists():
            return []
        # A Host with raw non-UTF-8 bytes makes an unreadable line; keep it readable here.
        text = self.access_log.read_bytes().decode("utf-8", errors="replace")
        return [json.loads(line) for line in text.splitlines() if line]

    def stop(self) -> None:
        self.nginx.stop(signal.SIGQUIT)
        if self.owns_registry:
            self.registry.stop()
        for registry in self.upstream_registries.values():
            registry.stop()
        if self.token is not None:
            self.token.stop()
        if self.verify is not None:
            self.verify.stop()

    @property
    def fetch_log(self) -> Path:
        return self.run_dir / "logs" / "fetch.log"

    def cache_files(self) -> list[Path]:
        return [p for p in self.params.cache_dir.rglob("*") if p.is_file()]


# A production-like edge, for tests that only render its configuration.
RENDER_PARAMS = edge_config.EdgeParams(
    name="edge-1",
    run_dir=Path("/srv/edge"),
    access_log=Path("/srv/edge/logs/access.log"),
    listen="127.0.0.1:8480",
    registry_listen="127.0.0.1:5000",
    storage_dir=Path("/srv/registry"),
    mirror_domain="m.example.io",
    upstream_url="https://registry-1.docker.io",
    ca_bundle=Path("/etc/ssl/certs/ca-certificates.crt"),
)


def edge_params(
    workdir: Path,
    *,
    upstream_url: str,
    name: str,
    mirror_domain: str,
    proxy_buffer_size: str = "64k",
    worker_processes: str = "2",
    registry_port: int | None = None,
    cache_max_size: str = "2g",
    upstreams: dict[str, str] | None = None,
    **overrides,
) -> edge_config.EdgeParams:
    """overrides: any other EdgeParams field (e.g. tenant_connections=4). upstreams: the
    UPSTREAMS setting as {name: url}, each registry on a port of its own."""
    run_dir = workdir / "edge"
    params = edge_config.EdgeParams(
        name=name,
        run_dir=run_dir,
        access_log=run_dir / "logs" / "access.log",
        listen=f"127.0.0.1:{free_port()}",
        registry_listen=f"127.0.0.1:{registry_port or free_port()}",
        storage_dir=workdir / "proxy-storage",
        mirror_domain=mirror_domain,
        upstream_url=upstream_url,
        worker_processes=worker_processes,
        proxy_buffer_size=proxy_buffer_size,
        fetch_listen=f"127.0.0.1:{free_port()}",
        token_listen=f"127.0.0.1:{free_port()}",
        verify_listen=f"127.0.0.1:{free_port()}",
        # Small slices, so that tests of a few MB exercise blobs of several slices.
        slice_size="1m",
        health_listen=f"127.0.0.1:{free_port()}",
        cache_dir=workdir / "blob-cache",
        cache_max_size=cache_max_size,
        resolver="127.0.0.1",
        # No bandwidth cap for active tenants unless a test asks for one (the low limits stay).
        tenant_rate=10**12,
        tenant_request_rate=100000,
        tenant_request_burst=100000,
        upstreams=tuple(
            edge_config.UpstreamRoute(name, url, f"127.0.0.1:{free_port()}")
            for name, url in (upstreams or {}).items()
        ),
    )
    return replace(params, **overrides)


_FRONT_CONF = """daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{}}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp;
    proxy_temp_path {d}/tmp;
    server {{
        listen 127.0.0.1:{port};
        location / {{
{location}
        }}
    }}
}}
"""


def start_front_nginx(workdir: Path, location: str, name: str = "front") -> tuple[Proc, str]:
    """A bare nginx on a free loopback port whose one location holds ``location`` (nginx
    directives): (its process, its URL). Its requests are logged to workdir/access.log."""
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = _FRONT_CONF.format(d=workdir, port=port, location=location)
    (workdir / "nginx.conf").write_text(conf)
    cmd = [which("nginx"), "-p", f"{workdir}/", "-c", str(workdir / "nginx.conf")]
    proc = Proc.start(name, [*cmd, "-e", str(workdir / "error.log")], log=workdir / "out.log")
    wait_port(port, proc=proc)
    return proc, f"http://127.0.0.1:{port}"


def start_sibling_edge(
    base: Edge, workdir: Path, *, gate: dict[str, str] | None = None, port: int = 0, **overrides
) -> Edge:
    """Another nginx from the template, with its own cache and digest check, sharing base's
    registry and token helper (which answers base's internal secret only). overrides:
    edge_params' (e.g. cache_max_size="3500k"); with verify_listen == fetch_listen it has no
    digest check. port: the one clients use, when not its plain listener."""
    overrides.setdefault("upstream_url", base.params.upstream_url)
    params = replace(
        edge_params(workdir, name=base.name, mirror_domain=base.mirror_domain, **overrides),
        registry_listen=base.params.registry_listen,
        token_listen=base.params.token_listen,
        internal_secret=base.params.internal_secret,
    )
    params.run_dir.mkdir(parents=True, exist_ok=True)
    params.cache_dir.mkdir(parents=True, exist_ok=True)
    (params.run_dir / "gate.map").write_text(edge_config.gate_map(gate or {})[0])
    verify = None
    if params.verify_listen != params.fetch_listen:
        verify = start_verifier(params, workdir / "verify.log")
    try:
        nginx = start_nginx(params)
    except Exception:
        if verify is not None:
            verify.stop()
        raise
    return Edge(
        params,
        nginx,
        base.registry,
        port or int(params.listen.rsplit(":", 1)[1]),
        base.mirror_domain,
        base.name,
        verify=verify,
        owns_registry=False,
    )


def start_token_helper(params: edge_config.EdgeParams, log: Path) -> Proc:
    # The secret nginx sends it (params.internal_secret), as edge_render writes it.
    params.run_dir.mkdir(parents=True, exist_ok=True)
    secret_file = params.run_dir / "internal.secret"
    secret_file.write_text(params.internal_secret + "\n")
    proc = Proc.start(
        "edge-token",
        [
            sys.executable,
            "-m",
            "edge.token_helper",
            "--listen",
            params.token_listen,
            "--upstream",
            params.upstream_url,
            "--secret-file",
            str(secret_file),
        ],
        log=log,
        env={
            "PYTHONPATH": str(ROOT),
            "UPSTREAMS": ",".join(f"{u.name}={u.url}" for u in params.upstreams),
        },
    )
    wait_port(int(params.token_listen.rsplit(":", 1)[1]), proc=proc)
    return proc


def start_verifier(params: edge_config.EdgeParams, log: Path, memory: str = "") -> Proc:
    """The edge's digest check (`manage.py edge_verify`) for the nginx of params; `memory`:
    its --memory (what fills keep in memory), when not the default."""
    proc = Proc.start(
        "edge-verify",
        [
            sys.executable,
            "-m",
            "edge.blob_verify",
            "--listen",
            params.verify_listen,
            "--fetch",
            params.fetch_listen,
            "--cache-dir",
            str(params.cache_dir),
            "--slice-size",
            params.slice_size,
            *(["--memory", memory] if memory else []),
        ],
        log=log,
        env={"PYTHONPATH": str(ROOT)},
    )
    wait_port(int(params.verify_listen.rsplit(":", 1)[1]), proc=proc)
    return proc


def start_nginx(params: edge_config.EdgeParams) -> Proc:
    """Render nginx.conf from deploy/ (as `manage.py edge_render` does) and start nginx."""
    run_dir = params.run_dir
    for sub in ("logs", "tmp"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    params.cache_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "nginx.conf").write_text(
        edge_config.nginx_conf((DEPLOY / "nginx" / "edge.conf.template").read_text(), params)
    )
    if not (run_dir / "gate.map").exists():
        (run_dir / "gate.map").write_text(edge_config.gate_map({})[0])
    nginx = Proc.start("nginx", nginx_cmd(run_dir), log=run_dir / "logs" / "nginx.out")
    wait_port(int(params.listen.rsplit(":", 1)[1]), proc=nginx)
    # nginx opens its listeners before it writes its pid file, which a gate sync signals.
    deadline = time.monotonic() + 15
    while not (run_dir / "nginx.pid").exists():
        assert time.monotonic() < deadline, nginx.log_tail()
        time.sleep(0.02)
    return nginx


def database_url() -> str:
    """The test database as a DATABASE_URL, for the processes a test starts."""
    from django.db import connection

    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def start_celery_with_beat(workdir: Path, env: dict[str, str]) -> Proc:
    """A real Celery worker with its embedded beat running the project's schedule, ready."""
    proc = Proc.start(
        "celery",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-B",
            "--pool=solo",
            "--loglevel=info",
            "--schedule",
            str(workdir / "beat-schedule"),
        ],
        log=workdir / "celery.log",
        env=env,
    )
    deadline = time.monotonic() + 60
    while "ready." not in proc.log_tail(10**6):
        assert proc.popen.poll() is None, proc.log_tail()
        assert time.monotonic() < deadline, proc.log_tail()
        time.sleep(0.2)
    return proc


def self_signed_cert(cert: Path, key: Path, *names: str, san: bool = True) -> tuple[Path, Path]:
    """A throwaway RSA certificate for the names given (the first is the subject)."""
    command = [
        which("openssl") or "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(cert),
        "-days",
        "2",
        "-subj",
        f"/CN={names[0]}",
    ]
    if san:
        command += ["-addext", "subjectAltName=" + ",".join(f"DNS:{n}" for n in names)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    return cert, key


def worker_readable_dir(prefix: str) -> Path:
    """A fresh directory nginx's workers can reach.

    Started as root, nginx runs its workers as an unprivileged user: they open the blob cache
    and reopen logs, so every directory on the way must be traversable (pytest's own temporary
    directories are not).
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def start_edge(workdir: Path, **kw) -> Edge:
    """The whole edge: Distribution in proxy mode and nginx, both rendered from deploy/.

    workdir must be reachable by nginx's workers (see worker_readable_dir).
    """
    params = edge_params(workdir, **kw)
    run_dir = params.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "registry.yml").write_text(
        edge_config.registry_conf(
            (DEPLOY / "registry" / "proxy.yml.template").read_text(), params, http_secret="e2e"
        )
    )
    reg_proc = Proc.start(
        "proxy-registry",
        [which("docker-registry"), "serve", str(run_dir / "registry.yml")],
        log=workdir / "proxy-registry.log",
    )
    registry_port = int(params.registry_listen.rsplit(":", 1)[1])
    wait_port(registry_port, proc=reg_proc)
    registry = Registry(reg_proc, registry_port, params.storage_dir, run_dir / "registry.yml")
    started: list = [registry]
    try:
        others = {}
        for up in params.upstreams:
            others[up.name] = start_upstream_registry(workdir, params, up)
            started.append(others[up.name])
        token = start_token_helper(params, workdir / "edge-token.log")
        started.append(token)
        verify = start_verifier(params, workdir / "edge-verify.log")
        started.append(verify)
        nginx = start_nginx(params)
    except Exception:
        for proc in started:
            proc.stop()
        raise
    port = int(params.listen.rsplit(":", 1)[1])
    return Edge(
        params,
        nginx,
        registry,
        port,
        params.mirror_domain,
        params.name,
        token=token,
        upstream_registries=others,
        verify=verify,
    )


def start_upstream_registry(
    workdir: Path, params: edge_config.EdgeParams, up: edge_config.UpstreamRoute
) -> Registry:
    """The pull-through registry of one registry in UPSTREAMS, rendered like edge_render."""
    conf = params.run_dir / edge_config.registry_conf_name(up)
    conf.write_text(
        edge_config.registry_conf(
            (DEPLOY / "registry" / "proxy.yml.template").read_text(),
            params,
            http_secret="e2e",
            upstream=up,
        )
    )
    proc = Proc.start(
        f"proxy-registry-{up.name}",
        [which("docker-registry"), "serve", str(conf)],
        log=workdir / f"proxy-registry-{up.name}.log",
    )
    port = int(up.registry_listen.rsplit(":", 1)[1])
    wait_port(port, proc=proc)
    return Registry(proc, port, edge_config.upstream_storage(params, up), conf)


def nginx_cmd(run_dir: Path) -> list[str]:
    return [
        which("nginx"),
        "-p",
        f"{run_dir}/",
        "-c",
        str(run_dir / "nginx.conf"),
        "-e",
        str(run_dir / "logs" / "error.log"),
    ]


# --- name resolution --------------------------------------------------------------------------

HOSTS_FILE = Path("/etc/hosts")
HOSTS_LOCK = Path(tempfile.gettempdir()) / "e2e-etc-hosts.lock"


class HostsFile:
    """Lines in /etc/hosts so Go programs (dockerd, skopeo) resolve test host names.

    Go's resolver, like glibc's, does not resolve *.localhost by itself. Lines carry a marker
    with this process id and are removed by remove_all(). The file is rewritten in place under
    an flock, since /etc/hosts is often a bind mount and other test runs may edit it too.
    """

    def __init__(self) -> None:
        self.marker = f"# e2e-edge-{os.getpid()}"
        self.names: set[str] = set()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(HOSTS_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _rewrite(self, keep, add: list[str]) -> None:
        lines = HOSTS_FILE.read_text().splitlines()
        lines = [line for line in lines if keep(line)] + add
        with open(HOSTS_FILE, "r+") as f:
            f.seek(0)
            f.write("\n".join(lines) + "\n")
            f.truncate()

    @staticmethod
    def _stale(line: str) -> bool:
        """A line left by a test run that died before removing it (its process is gone)."""
        match = re.search(r"# e2e-edge-(\d+)$", line)
        if not match:
            return False
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def add(self, *names: str) -> None:
        new = [n for n in names if n not in self.names]
        if not new:
            return
        with self._locked():
            self._rewrite(
                lambda line: not self._stale(line), [f"127.0.0.1 {n} {self.marker}" for n in new]
            )
        self.names.update(new)

    def remove_all(self) -> None:
        if not self.names:
            return
        with self._locked():
            self._rewrite(lambda line: not line.endswith(self.marker), [])
        self.names.clear()

    @staticmethod
    def writable() -> bool:
        return os.access(HOSTS_FILE, os.W_OK)


# --- skopeo ----------------------------------------------------------------------------------


class Skopeo:
    """skopeo with its own HOME/XDG directories and registries.conf.

    Run as root, skopeo keeps a cache under /var/lib/containers; this runs it as the unprivileged
    user 65534 (nobody) instead, so nothing outside its own directory is written.
    """

    UID = 65534

    def __init__(self, base: Path | None = None) -> None:
        self.base = Path(base or tempfile.mkdtemp(prefix="e2e-skopeo-"))
        self.as_root = os.geteuid() == 0
        for sub in ("home", "config", "data", "cache", "runtime", "out"):
            self._mkdir(self.base / sub)
        self._chown(self.base)
        self.registries_conf = self.base / "registries.conf"
        self.write_registries_conf("")

    def _chown(self, path: Path) -> None:
        if self.as_root:
            os.chown(path, self.UID, self.UID)

    def _mkdir(self, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)
        self._chown(path)
        return path

    def out_dir(self, name: str) -> Path:
        path = self.base / "out" / name
        if path.exists():
            shutil.rmtree(path)
        return self._mkdir(path)

    def write_registries_conf(self, text: str) -> None:
        self.registries_conf.write_text("unqualified-search-registries = []\n" + text)
        self.registries_conf.chmod(0o644)

    def mirror_docker_io(self, mirror_host: str) -> None:
        """docker.io mirrored by mirror_host, as a Docker daemon's registry-mirrors does."""
        self.write_registries_conf(
            '[[registry]]\nprefix = "docker.io"\nlocation = "registry-1.docker.io"\n\n'
            f'[[registry.mirror]]\nlocation = "{mirror_host}"\ninsecure = true\n'
        )

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.base / "home"),
            "XDG_CONFIG_HOME": str(self.base / "config"),
            "XDG_DATA_HOME": str(self.base / "data"),
            "XDG_CACHE_HOME": str(self.base / "cache"),
            "XDG_RUNTIME_DIR": str(self.base / "runtime"),
            "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
            "TMPDIR": str(self.base / "cache"),
        }
        cmd = [which("skopeo"), "--registries-conf", str(self.registries_conf), *args]
        if self.as_root:
            cmd = [
                which("setpriv"),
                f"--reuid={self.UID}",
                f"--regid={self.UID}",
                "--clear-groups",
                *cmd,
            ]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)

    def inspect(self, ref: str, *, raw: bool = False) -> subprocess.CompletedProcess:
        return self.run("inspect", "--tls-verify=false", *(["--raw"] if raw else []), ref)

    def copy_to_dir(
        self, ref: str, name: str, *extra: str
    ) -> tuple[subprocess.CompletedProcess, Path]:
        dest = self.out_dir(name)
        result = self.run("copy", "--src-tls-verify=false", *extra, ref, f"dir:{dest}")
        return result, dest

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def verify_dir_copy(dest: Path, image: Image) -> None:
    """A skopeo dir: copy holds exactly the image: manifest and every blob, digest and size."""
    manifest = (dest / "manifest.json").read_bytes()
    assert sha256_digest(manifest) == image.digest, "manifest digest differs from the upstream"
    for blob in image.blobs:
        path = dest / blob.digest.split(":", 1)[1]
        data = path.read_bytes()
        assert len(data) == blob.size and sha256_digest(data) == blob.digest, blob.digest


# --- dockerd ---------------------------------------------------------------------------------


@dataclass
class DockerDaemon:
    """A private dockerd (vfs storage, no networking changes) with a given mirror list."""

    proc: Proc
    root: Path
    socket: Path
    mirrors: tuple[str, ...]

    @property
    def env(self) -> dict[str, str]:
        return {
            "DOCKER_HOST": f"unix://{self.socket}",
            "DOCKER_CONFIG": str(self.root / "client"),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root / "client"),
        }

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(
            [which("docker"), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def log(self) -> str:
        return self.proc.log_tail(10**8)

    def stop(self) -> None:
        self.proc.stop(timeout=20)


def start_dockerd(
    root: Path, *, mirrors: Sequence[str], config_file: Path | None = None
) -> DockerDaemon:
    """A private dockerd. With ``config_file``, dockerd reads that daemon.json as it is (it
    must set "deprecated-key-path" under ``root``/data); otherwise one is written with
    ``mirrors``."""
    data, execroot, client = root / "data", root / "exec", root / "client"
    for d in (data, execroot, client):
        d.mkdir(parents=True, exist_ok=True)
    (client / "config.json").write_text("{}")
    config = config_file or root / "daemon.json"
    if config_file is None:
        config.write_text(
            json.dumps(
                {"deprecated-key-path": str(data / "key.json"), "registry-mirrors": list(mirrors)}
            )
        )
    sock = root / "docker.sock"
    cmd = [
        which("dockerd"),
        "--storage-driver=vfs",
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        f"--data-root={data}",
        f"--exec-root={execroot}",
        f"--pidfile={root / 'docker.pid'}",
        f"--host=unix://{sock}",
        f"--config-file={config}",
    ]
    proc = Proc.start("dockerd", cmd, log=root / "dockerd.log")
    daemon = DockerDaemon(proc, root, sock, tuple(mirrors))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"dockerd exited:\n{proc.log_tail()}")
        try:
            if sock.exists() and daemon.cli("version", timeout=10).returncode == 0:
                return daemon
        except subprocess.TimeoutExpired:  # a loaded machine: ask again until the deadline
            continue
        time.sleep(0.1)
    daemon.stop()
    raise TimeoutError(f"dockerd did not answer within 60s:\n{proc.log_tail()}")


# --- containerd and podman (registries beyond Docker Hub) -----------------------------------

CONTAINERD_CONFIG = """version = 2
root = {root}
state = {state}
# Only what pulling needs: no CRI, no kernel snapshotters (the native one copies files).
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.internal.v1.opt"]
[grpc]
  address = {sock}
[ttrpc]
  address = {ttrpc}
[debug]
  address = ""
[metrics]
  address = ""
"""


@dataclass
class Containerd:
    """A private containerd; ``pull`` runs ``ctr images pull --hosts-dir`` against it."""

    proc: Proc
    root: Path
    socket: Path

    def pull(self, ref: str, hosts_dir: Path, *, timeout: float = 180):
        cmd = [which("ctr"), "--address", str(self.socket), "images", "pull"]
        cmd += ["--hosts-dir", str(hosts_dir), "--snapshotter", "native", ref]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        self.proc.stop(timeout=20)


def start_containerd(root: Path) -> Containerd:
    root.mkdir(parents=True, exist_ok=True)
    sock = root / "c.sock"
    config = root / "config.toml"
    config.write_text(
        CONTAINERD_CONFIG.format(
            root=json.dumps(str(root / "root")),
            state=json.dumps(str(root / "state")),
            sock=json.dumps(str(sock)),
            ttrpc=json.dumps(str(root / "t.sock")),
        )
    )
    proc = Proc.start(
        "containerd", [which("containerd"), "--config", str(config)], log=root / "c.log"
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"containerd exited:\n{proc.log_tail()}")
        if sock.exists():
            version = subprocess.run(
                [which("ctr"), "--address", str(sock), "version"], capture_output=True, timeout=10
            )
            if version.returncode == 0:
                return Containerd(proc, root, sock)
        time.sleep(0.1)
    proc.stop()
    raise TimeoutError(f"containerd did not answer within 30s:\n{proc.log_tail()}")


def podman_pull(root: Path, registries_conf: str, ref: str, *, timeout: float = 180):
    """podman pull with its own storage (vfs) and the given registries.conf text."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "registries.conf").write_text(registries_conf)
    (root / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{root}/run"\ngraphroot = "{root}/graph"\n'
    )
    (root / "tmp").mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "CONTAINERS_REGISTRIES_CONF": str(root / "registries.conf"),
        "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
        "TMPDIR": str(root / "tmp"),
    }
    cmd = [which("podman"), "--cgroup-manager=cgroupfs", "--events-backend=file"]
    cmd += ["--tmpdir", str(root / "tmp"), "pull", ref]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
