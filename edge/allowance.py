"""Upstream pull allowances: Docker Hub's ``ratelimit-limit`` / ``ratelimit-remaining``.

Docker Hub counts pulls per client address (each edge's own) and says where a client stands in
two headers on manifest answers, ``ratelimit-limit: 100;w=21600`` and
``ratelimit-remaining: 76;w=21600``; a HEAD carries them and is not counted. Every
UPSTREAM_RATELIMIT_PROBE_SECONDS each edge's worker sends one HEAD per probed registry
(UPSTREAM_RATELIMIT_PROBES, ``<registry>=<repository>:<tag>``) with the same token the blob
fetches use, and records what it read; staff see it per edge and registry, with a warning once
the remaining pulls fall to UPSTREAM_RATELIMIT_WARN_PERCENT of the limit. A registry that
sends no such headers is shown as not reporting one.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from config.upstreams import DOCKER_HUB
from edge.models import UpstreamAllowance
from edge.token_helper import TokenCache, TokenError

TIMEOUT = 10.0
_HEADER_RE = re.compile(r"^\s*(\d{1,12})\s*(?:;\s*w\s*=\s*(\d{1,9}))?")
_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)


def parse_ratelimit(value: str | None) -> tuple[int | None, int | None]:
    """``"100;w=21600"`` -> (100, 21600); absent or unreadable -> (None, None)."""
    match = _HEADER_RE.match(value or "")
    if not match:
        return None, None
    return int(match.group(1)), int(match.group(2)) if match.group(2) else None


@dataclass(frozen=True)
class Reading:
    limit: int | None
    remaining: int | None
    window_seconds: int | None
    error: str = ""


def probe(cache: TokenCache, repository: str, tag: str) -> Reading:
    """One HEAD of a manifest upstream; its ratelimit headers, also on a 429."""
    try:
        auth = cache.header_for(repository)
    except TokenError as exc:
        return Reading(None, None, None, f"token: {exc}"[:200])
    request = urllib.request.Request(
        f"{cache.upstream}/v2/{repository}/manifests/{tag}", method="HEAD"
    )
    request.add_header("Accept", _ACCEPT)
    if auth:
        request.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            headers, error = response.headers, ""
    except urllib.error.HTTPError as exc:
        headers, error = exc.headers, f"HTTP {exc.code}"
    except OSError as exc:
        return Reading(None, None, None, f"unreachable: {exc}"[:200])
    limit, window = parse_ratelimit(headers.get("ratelimit-limit"))
    remaining, window2 = parse_ratelimit(headers.get("ratelimit-remaining"))
    return Reading(limit, remaining, window or window2, error)


def allowance_probe(*, edge: str | None = None) -> list[UpstreamAllowance]:
    """Probe every registry of UPSTREAM_RATELIMIT_PROBES this edge mirrors; record each
    reading (one row per edge and registry, overwritten). Idempotent."""
    edge = edge or settings.EDGE_NAME
    urls = {
        DOCKER_HUB: (settings.UPSTREAM_URL, settings.UPSTREAM_USERNAME, settings.UPSTREAM_PASSWORD)
    }
    urls |= {u.name: (u.url, u.username, u.password) for u in settings.UPSTREAMS}
    rows = []
    for name, (repository, tag) in sorted(settings.UPSTREAM_RATELIMIT_PROBES.items()):
        if name not in urls:
            continue
        reading = probe(TokenCache(*urls[name]), repository, tag)
        row, _ = UpstreamAllowance.objects.update_or_create(
            edge=edge,
            registry=name,
            defaults={
                "limit": reading.limit,
                "remaining": reading.remaining,
                "window_seconds": reading.window_seconds,
                "error": reading.error,
                "checked_at": timezone.now(),
            },
        )
        rows.append(row)
    return rows
