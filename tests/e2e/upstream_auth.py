"""An upstream registry that behaves like Docker Hub: bearer tokens and redirects to a blob store.

- a token server (RS256 JWTs signed with a key and self-signed certificate generated here with
  the openssl command), which Distribution trusts through `auth: token`;
- Distribution with the `redirect` storage middleware, answering blob GETs with 307 to
- a blob store: a small file server over the registry's storage that counts full reads per
  blob, and can be told to cut a blob short or to send it slowly.
No pytest, no Django: used by tests/e2e/test_blob_cache.py and reusable by benches.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.e2e import harness

ISSUER = "e2e-issuer"
SERVICE = "e2e-upstream"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues pull/push tokens for any scope asked; counts requests by client and scope."""

    def __init__(self, workdir: Path) -> None:
        self.key = workdir / "token-key.pem"
        self.cert = workdir / "token-cert.pem"
        harness.self_signed_cert(self.cert, self.key, "e2e-token-issuer", san=False)
        der = subprocess.run(
            [harness.which("openssl"), "x509", "-in", str(self.cert), "-outform", "der"],
            check=True,
            capture_output=True,
            timeout=30,
        ).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests: Counter = Counter()  # (user agent family, scope) -> count
        self.authorizations: list[str] = []  # the Authorization header of every request
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                query = parse_qs(urlsplit(self.path).query)
                scope = query.get("scope", [""])[0]
                agent = "python" if "Python" in self.headers.get("User-Agent", "") else "other"
                with server.lock:
                    server.requests[(agent, scope)] += 1
                    server.authorizations.append(self.headers.get("Authorization", ""))
                body = json.dumps(server.issue(scope, query.get("service", [""])[0])).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def issue(self, scope: str, service: str) -> dict:
        access = []
        if scope.startswith("repository:"):
            _, name, actions = scope.split(":", 2)
            access.append({"type": "repository", "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": "",
            "aud": service or SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = subprocess.run(
            [harness.which("openssl"), "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
            timeout=30,
        ).stdout
        token = f"{signing_input}.{_b64url(signature)}"
        return {"token": token, "access_token": token, "expires_in": 300}

    def helper_requests(self, scope: str) -> int:
        """Token requests the edge's token helper (a Python client) made for scope."""
        return self.requests[("python", scope)]

    def stop(self) -> None:
        self.httpd.shutdown()


HOLD_AFTER = 512 * 1024  # BlobStore.hold: two of the edge's 256 KiB chunks


class SharedLink:
    """One upstream link shared by every connection: a token bucket paces all the bytes sent
    (per-connection pacing would give each slice or range request its own budget)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.lock = threading.Lock()
        self.next_free = time.monotonic()

    def send(self, wfile, data: bytes) -> None:
        step = 64 * 1024
        for i in range(0, len(data), step):
            piece = data[i : i + step]
            with self.lock:
                now = time.monotonic()
                start = max(now, self.next_free)
                self.next_free = start + len(piece) / self.rate
            if start > now:
                time.sleep(start - now)
            wfile.write(piece)


@dataclass
class BlobStore:
    """Serves the registry's storage to redirected clients; counts and misbehaves on request."""

    root: Path
    full_reads: Counter = field(default_factory=Counter)  # hex digest -> complete GET bodies
    heads: Counter = field(default_factory=Counter)
    truncate_next: set = field(default_factory=set)  # hex digests: next GET stops half-way
    truncate_all: set = field(default_factory=set)  # hex digests: every GET stops half-way
    slow: dict = field(default_factory=dict)  # hex digest -> seconds per 256 KiB chunk
    no_length: set = field(default_factory=set)  # hex digests sent without Content-Length
    authorizations: list = field(default_factory=list)  # Authorization header of each GET
    corrupt: set = field(default_factory=set)  # hex digests served with one byte changed
    cut_at: dict = field(default_factory=dict)  # hex digest -> range start cut short, once
    tenant_headers: list = field(default_factory=list)  # X-Edge-Tenant of each GET (none)
    bytes_out: Counter = field(default_factory=Counter)  # hex digest -> body bytes sent
    sizes: dict = field(default_factory=dict)  # hex digest -> blob size
    gets: list = field(default_factory=list)  # (hex digest, Range header) of each GET
    # hex digest -> (start, Event): a GET from byte `start` pauses after HOLD_AFTER bytes of its
    # body until the event is set.
    hold: dict = field(default_factory=dict)
    link: SharedLink | None = None  # the upstream's bandwidth, when throttled
    httpd: ThreadingHTTPServer | None = None

    def start(self) -> None:
        store = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _file(self):
                path = (store.root / urlsplit(self.path).path.lstrip("/")).resolve()
                if store.root.resolve() not in path.parents or not path.is_file():
                    self.send_error(404)
                    return None, None
                # .../blobs/sha256/ab/<hex>/data
                return path, path.parent.name

            def do_HEAD(self):  # noqa: N802
                path, digest = self._file()
                if path is None:
                    return
                store.heads[digest] += 1
                self.send_response(200)
                self.send_header("Content-Length", str(path.stat().st_size))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()

            def do_GET(self):  # noqa: N802
                store.authorizations.append(self.headers.get("Authorization", ""))
                store.tenant_headers.append(self.headers.get("X-Edge-Tenant", ""))
                path, digest = self._file()
                if path is None:
                    return
                size = path.stat().st_size
                store.sizes[digest] = size
                wanted = self.headers.get("Range", "")
                store.gets.append((digest, wanted))
                found = re.match(r"^bytes=(\d+)-(\d*)$", wanted)
                start, end = 0, size - 1
                if found and digest not in store.no_length and int(found.group(1)) < size:
                    start = int(found.group(1))
                    end = min(int(found.group(2) or end), end)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                else:
                    self.send_response(200)
                # Only the range asked for is read (benches serve blobs of hundreds of MB).
                with open(path, "rb") as blob:
                    blob.seek(start)
                    body = blob.read(end - start + 1)
                middle = size // 2
                if digest in store.corrupt and start <= middle <= end:
                    at = middle - start
                    body = body[:at] + bytes([body[at] ^ 0xFF]) + body[at + 1 :]
                if digest in store.no_length:
                    # The body ends when the connection closes: a cut could go unnoticed.
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                cut = digest in store.truncate_next or digest in store.truncate_all
                if cut or store.cut_at.get(digest) == start:
                    store.truncate_next.discard(digest)
                    store.cut_at.pop(digest, None)
                    self.wfile.write(body[: len(body) // 2])
                    store.bytes_out[digest] += len(body) // 2
                    self.wfile.flush()
                    self.close_connection = True
                    return
                delay = store.slow.get(digest, 0)
                try:
                    for i in range(0, len(body), 256 * 1024):
                        piece = body[i : i + 256 * 1024]
                        if store.link is not None:
                            store.link.send(self.wfile, piece)
                        else:
                            self.wfile.write(piece)
                        store.bytes_out[digest] += len(piece)
                        if delay:
                            time.sleep(delay)
                        held = store.hold.get(digest)
                        if held and held[0] == start and i + len(piece) == HOLD_AFTER:
                            self.wfile.flush()
                            held[1].wait(60)  # bounded: a test that fails still ends
                except (BrokenPipeError, ConnectionResetError):
                    return
                if start == 0 and end == size - 1:
                    store.full_reads[digest] += 1

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def reads(self, digest: str) -> float:
        """The blob's body bytes sent, in blob sizes (1 = the blob was read once, in one
        request or in slices; cut or aborted sends count what was written)."""
        hexdigest = digest.split(":", 1)[1]
        size = self.sizes.get(hexdigest)
        return self.bytes_out[hexdigest] / size if size else 0

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()


AUTH_REGISTRY = """version: 0.1
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
middleware:
  storage:
    - name: redirect
      options:
        baseurl: {baseurl}
http:
  addr: 127.0.0.1:{port}
auth:
  token:
    realm: {realm}
    service: {service}
    issuer: {issuer}
    rootcertbundle: {cert}
"""


@dataclass
class AuthUpstream:
    registry: harness.Registry
    tokens: TokenServer
    store: BlobStore

    @property
    def url(self) -> str:
        return self.registry.url

    def stop(self) -> None:
        self.registry.stop()
        self.tokens.stop()
        self.store.stop()


def start_auth_upstream(
    workdir: Path, images: dict[str, harness.Image], *, rate: int = 0
) -> AuthUpstream:
    """Push `images` (repo library/<name>, tag latest) with a plain registry on the same
    storage, then serve that storage with token auth and redirects; `rate` (bytes per second)
    throttles the blob store's link, shared by all its connections."""
    plain = harness.start_registry(workdir / "plain")
    try:
        for name, image in images.items():
            harness.push_image(plain.port, f"library/{name}", "latest", image)
    finally:
        plain.stop()
    tokens = TokenServer(workdir)
    store = BlobStore(plain.storage, link=SharedLink(rate) if rate else None)
    store.start()
    port = harness.free_port()
    config = workdir / "auth-registry.yml"
    config.write_text(
        AUTH_REGISTRY.format(
            storage=json.dumps(str(plain.storage)),
            baseurl=store.url,
            port=port,
            realm=tokens.realm,
            service=SERVICE,
            issuer=ISSUER,
            cert=json.dumps(str(tokens.cert)),
        )
    )
    proc = harness.Proc.start(
        "auth-upstream",
        [harness.which("docker-registry"), "serve", str(config)],
        log=workdir / "auth-registry.log",
    )
    harness.wait_port(port, proc=proc)
    return AuthUpstream(harness.Registry(proc, port, plain.storage, config), tokens, store)
