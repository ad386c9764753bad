"""The registries an edge mirrors: Docker Hub (UPSTREAM_URL) and the operator's UPSTREAMS.

No Django imports: settings, the edge's renderer and its token helper use it.

``UPSTREAMS`` is comma-separated ``name=url`` pairs, e.g.
``ghcr.io=https://ghcr.io,quay.io=https://quay.io``. A name is the registry's host name as
clients write it in image references; it is a lookup key only, never dialled (the url is). A
name must hold a dot: a first path component with a dot is how the edge tells a registry
prefix (``/v2/ghcr.io/org/image/...``) from a Docker Hub namespace, which never has one.
Credentials per upstream come from ``UPSTREAM_<NAME>_USERNAME`` and ``_PASSWORD`` (or
``_PASSWORD_FILE``), where ``<NAME>`` is the name upper-cased with every other character as
``_`` (``ghcr.io`` -> ``UPSTREAM_GHCR_IO_USERNAME``).

A DENY entry (``UPSTREAM_DENY``) is ``<name>/<repository>``: the edge refuses that repository
of that registry by tag and by digest alike (operators' takedowns).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DOCKER_HUB = "docker.io"
# A DNS name with at least one dot, lower case, at most 64 characters (the access log's and
# the ledger's bound).
NAME_RE = re.compile(
    r"^(?=.{4,64}$)[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$"
)
URL_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?/?$")
# Distribution's repository name grammar (lower case, components separated by "/").
REPOSITORY_RE = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
MAX_UPSTREAMS = 32


class UpstreamError(ValueError):
    """A setting that names no usable upstream; the message names the setting."""


@dataclass(frozen=True)
class Upstream:
    name: str
    url: str
    username: str = ""
    password: str = ""


def env_key(name: str) -> str:
    """``ghcr.io`` -> ``GHCR_IO``: the part of UPSTREAM_<NAME>_* variables for an upstream."""
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def parse_upstreams(text: str, environ: Mapping[str, str]) -> tuple[Upstream, ...]:
    """The UPSTREAMS setting, validated, with each upstream's credentials from ``environ``.

    Raises UpstreamError naming the setting for a malformed pair, a name that is no registry
    host name, docker.io (that is UPSTREAM_URL), a duplicate, or half a credential.
    """
    upstreams: list[Upstream] = []
    seen: set[str] = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, url = (s.strip() for s in item.partition("="))
        if not sep:
            raise UpstreamError(f"UPSTREAMS: {item[:80]!r} is not name=url")
        if not NAME_RE.match(name):
            raise UpstreamError(
                f"UPSTREAMS: {name[:80]!r} is not a registry host name (lower case, with a dot)"
            )
        if name == DOCKER_HUB:
            raise UpstreamError("UPSTREAMS: docker.io is UPSTREAM_URL; leave it out of UPSTREAMS")
        if name in seen:
            raise UpstreamError(f"UPSTREAMS: {name} is listed twice")
        if not URL_RE.match(url):
            raise UpstreamError(
                f"UPSTREAMS: {name}'s url must be http(s)://host[:port]: {url[:80]!r}"
            )
        seen.add(name)
        key = env_key(name)
        username = environ.get(f"UPSTREAM_{key}_USERNAME", "")
        password = environ.get(f"UPSTREAM_{key}_PASSWORD", "")
        password_file = environ.get(f"UPSTREAM_{key}_PASSWORD_FILE", "")
        if password_file:
            if password:
                raise UpstreamError(
                    f"set UPSTREAM_{key}_PASSWORD or UPSTREAM_{key}_PASSWORD_FILE, not both"
                )
            try:
                password = Path(password_file).read_text().strip()
            except OSError as exc:
                raise UpstreamError(f"UPSTREAM_{key}_PASSWORD_FILE: {exc.strerror}") from None
        if bool(username) != bool(password):
            raise UpstreamError(
                f"set both UPSTREAM_{key}_USERNAME and UPSTREAM_{key}_PASSWORD, or neither"
            )
        upstreams.append(Upstream(name, url.rstrip("/"), username, password))
    if len(upstreams) > MAX_UPSTREAMS:
        raise UpstreamError(f"UPSTREAMS: at most {MAX_UPSTREAMS} upstreams")
    return tuple(upstreams)


TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def parse_probes(entries: list[str], names: set[str]) -> dict[str, tuple[str, str]]:
    """UPSTREAM_RATELIMIT_PROBES -> {registry: (repository, tag)}, registries of this edge."""
    probes: dict[str, tuple[str, str]] = {}
    for entry in entries:
        name, _, ref = entry.partition("=")
        repository, _, tag = ref.rpartition(":")
        if name not in names or not REPOSITORY_RE.match(repository) or not TAG_RE.match(tag):
            raise UpstreamError(
                f"UPSTREAM_RATELIMIT_PROBES: {entry[:80]!r} is not <registry>=<repository>:<tag> "
                "of a registry this edge mirrors"
            )
        probes[name] = (repository, tag)
    return probes


def parse_deny(text: str, names: set[str]) -> tuple[str, ...]:
    """UPSTREAM_DENY: comma-separated ``<registry>/<repository>``, each of a known registry."""
    entries: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, repository = item.partition("/")
        if name not in names:
            raise UpstreamError(
                f"UPSTREAM_DENY: {item[:80]!r} must start with a registry this edge mirrors "
                f"({', '.join(sorted(names))})"
            )
        if name == DOCKER_HUB and repository and "/" not in repository:
            repository = f"library/{repository}"  # how Docker names official images
        if not REPOSITORY_RE.match(repository) or len(repository) > 255:
            raise UpstreamError(f"UPSTREAM_DENY: {item[:80]!r} has no valid repository name")
        entries.append(f"{name}/{repository}")
    return tuple(sorted(set(entries)))
