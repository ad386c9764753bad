"""The edge's token helper: bearer tokens for fetching blobs from the upstream registry.

nginx's fetch server asks it (auth_request) before each blob fetch from UPSTREAM_URL; it answers
with the header `X-Upstream-Authorization` to send upstream. Registries such as Docker Hub want
a bearer token per repository scope, anonymous or for an account; tokens are cached per scope
until shortly before they expire (at most MAX_TOKENS, least recently used first out), and one
fetch per scope runs at a time.

Every registry of the edge has its own cache: the fetch server's URI carries ``ns=<name>``
(set by the edge after routing), and an unknown name gets no token (403), nothing dialled.

Only nginx may ask: a request without the edge's internal secret (header X-Edge-Secret, the
file EDGE_RUN_DIR/internal.secret that edge_render creates) gets 403 and no token, so a local
user of the edge host cannot borrow the upstream account.

A data-plane process: no Django, no database. Run with
    python -m edge.token_helper --listen 127.0.0.1:8482 --upstream https://registry-1.docker.io \
        --secret-file EDGE_RUN_DIR/internal.secret
(credentials from UPSTREAM_USERNAME / UPSTREAM_PASSWORD in the environment; the other
registries from UPSTREAMS and UPSTREAM_<NAME>_* as config/upstreams.py reads them), or
`manage.py edge_token`, which takes them from settings.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from config.upstreams import DOCKER_HUB, Upstream, parse_upstreams

logger = logging.getLogger("edge_token")

REPO_RE = re.compile(
    r"^/v2/([a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)/blobs/"
)
CHALLENGE_TTL = 300.0  # how long the upstream's /v2/ answer (auth scheme, realm) is trusted
EXPIRY_MARGIN = 15.0
TIMEOUT = 15.0
# Scopes are per repository name, which any tenant can invent by asking for blobs of names
# that do not exist: the cache must not grow with them. A token is 1-2 KB, so this bounds it
# to a few MB; an edge that pulls from more repositories than this within a token's lifetime
# (5 minutes on Docker Hub) fetches some tokens again, one small request each.
MAX_TOKENS = 4096
# Fetches of one scope run one at a time; scopes share a fixed set of locks (by hash), so the
# locks do not grow with the scopes either.
LOCK_STRIPES = 64


class TokenError(Exception):
    """The upstream's token service could not be reached or refused."""


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="x",service="y"` -> ("bearer", {"realm": "x", "service": "y"})."""
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


def repo_from_uri(uri: str) -> str | None:
    path = urllib.parse.urlsplit(uri).path
    match = REPO_RE.match(path)
    return match.group(1) if match and len(match.group(1)) <= 255 else None


def registry_from_uri(uri: str) -> str:
    """The ns= the edge put on a fetch (Docker Hub when there is none)."""
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(uri).query).get("ns")
    return values[0] if values else DOCKER_HUB


@dataclass
class _Entry:
    value: str
    expires: float


class TokenCache:
    """Authorization header values for the upstream, per repository. Thread-safe."""

    def __init__(
        self, upstream: str, username: str = "", password: str = "", *, max_tokens: int = MAX_TOKENS
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.basic = (
            "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
            if username
            else ""
        )
        self._challenge: tuple[float, str, dict[str, str]] | None = None
        self.max_tokens = max_tokens
        self._tokens: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
        self._guard = threading.Lock()  # guards _tokens
        self.fetches = 0  # token requests made upstream (for tests and figures)

    def _lock_for(self, key: str) -> threading.Lock:
        return self._locks[zlib.crc32(key.encode()) % LOCK_STRIPES]

    def _cached(self, scope: str) -> str | None:
        with self._guard:
            entry = self._tokens.get(scope)
            if entry is None:
                return None
            if entry.expires <= time.monotonic():
                del self._tokens[scope]
                return None
            self._tokens.move_to_end(scope)
            return entry.value

    def _store(self, scope: str, entry: _Entry) -> None:
        with self._guard:
            self._tokens[scope] = entry
            self._tokens.move_to_end(scope)
            now = time.monotonic()
            for key in [k for k, e in self._tokens.items() if e.expires <= now]:
                del self._tokens[key]
            while len(self._tokens) > self.max_tokens:
                self._tokens.popitem(last=False)

    def _get_challenge(self) -> tuple[str, dict[str, str]]:
        now = time.monotonic()
        if self._challenge and now - self._challenge[0] < CHALLENGE_TTL:
            return self._challenge[1], self._challenge[2]
        try:
            with urllib.request.urlopen(f"{self.upstream}/v2/", timeout=TIMEOUT):
                scheme, params = "none", {}
        except urllib.error.HTTPError as exc:
            if exc.code != 401:
                raise TokenError(f"upstream /v2/ answered {exc.code}") from exc
            scheme, params = parse_challenge(exc.headers.get("WWW-Authenticate", ""))
        except OSError as exc:
            raise TokenError(f"upstream unreachable: {exc}") from exc
        self._challenge = (now, scheme, params)
        return scheme, params

    def header_for(self, repo: str) -> str:
        """The Authorization value for pulling from repo ("" when none is needed)."""
        scheme, params = self._get_challenge()
        if scheme == "none":
            return ""
        if scheme == "basic":
            return self.basic
        if scheme != "bearer" or "realm" not in params:
            raise TokenError(f"unsupported upstream auth scheme {scheme!r}")
        scope = f"repository:{repo}:pull"
        with self._lock_for(scope):
            cached = self._cached(scope)
            if cached is not None:
                return cached
            query = {"scope": scope}
            if params.get("service"):
                query["service"] = params["service"]
            request = urllib.request.Request(
                params["realm"]
                + ("&" if "?" in params["realm"] else "?")
                + urllib.parse.urlencode(query)
            )
            if self.basic:
                request.add_header("Authorization", self.basic)
            started = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:
                    body = json.load(resp)
            except (OSError, ValueError) as exc:
                raise TokenError(f"token service: {exc}") from exc
            self.fetches += 1
            token = body.get("token") or body.get("access_token")
            if not token:
                raise TokenError("token service answered without a token")
            lifetime = float(body.get("expires_in") or 60)
            value = f"Bearer {token}"
            self._store(scope, _Entry(value, started + max(5.0, lifetime - EXPIRY_MARGIN)))
            return value


def make_handler(caches: TokenCache | dict[str, TokenCache], secret: str):
    if isinstance(caches, TokenCache):
        caches = {DOCKER_HUB: caches}
    if len(secret) < 32:
        raise ValueError("the token helper needs the edge's internal secret (32+ characters)")
    expected = secret.encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            given = self.headers.get("X-Edge-Secret", "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, expected):
                return self._answer(403, "")
            uri = self.headers.get("X-Original-URI", "")
            repo = repo_from_uri(uri)
            cache = caches.get(registry_from_uri(uri))
            if repo is None or cache is None:
                return self._answer(403, "")
            try:
                value = cache.header_for(repo)
            except TokenError as exc:
                logger.warning("no token for %s: %s", repo, exc)
                return self._answer(503, "")
            return self._answer(200, value)

        def _answer(self, status: int, value: str) -> None:
            self.send_response(status)
            if value:
                self.send_header("X-Upstream-Authorization", value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, fmt: str, *args) -> None:
            logger.debug(fmt, *args)

    return Handler


def read_secret(path: str) -> str:
    with open(path, encoding="ascii") as handle:
        return handle.read().strip()


def serve(
    listen: str,
    upstream: str,
    username: str = "",
    password: str = "",
    others: tuple[Upstream, ...] = (),
    *,
    secret: str,
) -> None:
    host, _, port = listen.rpartition(":")
    caches = {DOCKER_HUB: TokenCache(upstream, username, password)}
    for other in others:
        caches[other.name] = TokenCache(other.url, other.username, other.password)
    server = ThreadingHTTPServer((host.strip("[]"), int(port)), make_handler(caches, secret))
    server.daemon_threads = True
    logger.info("edge token helper on %s for %s", listen, ", ".join(sorted(caches)))
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--secret-file", required=True, help="EDGE_RUN_DIR/internal.secret")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    serve(
        args.listen,
        args.upstream,
        os.environ.get("UPSTREAM_USERNAME", ""),
        os.environ.get("UPSTREAM_PASSWORD", ""),
        parse_upstreams(os.environ.get("UPSTREAMS", ""), os.environ),
        secret=read_secret(args.secret_file),
    )


if __name__ == "__main__":
    main()
