"""What the edge saw of a tenant's clients, as plain data. No Django here (ingestion's parser
uses it on every line of a batch).

- ``client_from_agent``: the client and its version from a ``User-Agent``. Docker's daemon
  sends ``docker/<engine version> … UpstreamClient(Docker-Client/<cli version> (linux))``;
  containerd ``containerd/<version>``; skopeo ``skopeo/<version>``; podman 4.3 the agent of its
  image library, ``containers/<library version> (github.com/containers/image)`` (no podman
  version; ``libpod/<version>`` is recognised too).
- ``Pull``/``pull_add``: a pull is what one client asked of one repository in a short time: the
  tag HEAD, the manifests (list, then the platform's) and the blobs. Consecutive requests for
  the same repository within ``PULL_WINDOW_SECONDS`` fold into one pull; the tag wins over a
  digest, the bytes add up. The same rule folds a batch's pulls into the stored ones, so a pull
  that straddles two batches is still one pull.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# nginx logs at most this much of the User-Agent (deploy/nginx/edge.conf.template).
AGENT_MAX = 256
RECENT_PULLS = 20
PULL_WINDOW_SECONDS = 60.0


class Client:
    DOCKER = "docker"
    CONTAINERD = "containerd"
    PODMAN = "podman"
    SKOPEO = "skopeo"
    OTHER = "other"


_VERSION = r"v?([0-9][0-9A-Za-z.+~-]{0,40})"
_AGENTS = (
    (Client.DOCKER, re.compile(r"^docker/" + _VERSION)),
    (Client.CONTAINERD, re.compile(r"^containerd/" + _VERSION)),
    (Client.PODMAN, re.compile(r"^(?:libpod|podman)/" + _VERSION)),
    (Client.SKOPEO, re.compile(r"^skopeo/" + _VERSION)),
)
# podman (4.3 measured) and buildah send the agent of their image library,
# "containers/5.23.1 (github.com/containers/image)": podman, without a version of its own.
_CONTAINERS_IMAGE = re.compile(
    r"^containers/[0-9][0-9A-Za-z.+~-]{0,40} \(github\.com/containers/image\)"
)
_DOCKER_CLI = re.compile(r"UpstreamClient\(Docker-Client/" + _VERSION)


@dataclass(frozen=True)
class ClientInfo:
    kind: str  # a Client value
    version: str  # "" when unknown
    cli_version: str = ""  # Docker only: the CLI that asked the daemon


def client_from_agent(agent: str) -> ClientInfo:
    """Classify a User-Agent; anything unrecognised (or empty) is ``other``."""
    agent = agent[:AGENT_MAX]
    for kind, pattern in _AGENTS:
        m = pattern.match(agent)
        if m:
            cli = ""
            if kind == Client.DOCKER:
                c = _DOCKER_CLI.search(agent)
                cli = c.group(1) if c else ""
            return ClientInfo(kind, m.group(1), cli)
    if _CONTAINERS_IMAGE.match(agent):
        return ClientInfo(Client.PODMAN, "")
    return ClientInfo(Client.OTHER, "")


# /v2/<repository>/(manifests|blobs)/<reference>: repository names as Distribution defines
# them (the edge refuses others before they reach the log as a 200).
_PULL_PATH = re.compile(
    r"^/v2/(?P<repo>[a-z0-9][a-z0-9._/-]{0,255})/(?P<kind>manifests|blobs)/(?P<ref>[A-Za-z0-9_][A-Za-z0-9_.:+=-]{0,127})$"
)


def pull_path(uri: str) -> tuple[str, str, str] | None:
    """(repository, "manifests" or "blobs", reference) of a pull request's path, else None."""
    m = _PULL_PATH.match(uri.partition("?")[0])
    if m is None:
        return None
    return m.group("repo"), m.group("kind"), m.group("ref")


def is_tag(ref: str) -> bool:
    return ":" not in ref


class Pull:
    """One pull: repository, tag (or digest, or "" when only blobs were seen), bytes served,
    first and last request time (epoch seconds)."""

    __slots__ = ("repo", "ref", "bytes", "first", "last")

    def __init__(self, repo: str, ref: str, nbytes: int, first: float, last: float) -> None:
        self.repo = repo
        self.ref = ref
        self.bytes = nbytes
        self.first = first
        self.last = last

    def as_dict(self) -> dict:
        return {
            "repository": self.repo,
            "reference": self.ref,
            "bytes": self.bytes,
            "first": self.first,
            "last": self.last,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Pull:
        return cls(d["repository"], d["reference"], d["bytes"], d["first"], d["last"])


def pull_add(pulls: list[Pull], *, repo: str, ref: str, nbytes: int, ts: float) -> None:
    """Fold one served manifest or blob (ref "" for a blob) into ``pulls`` (oldest first; at
    most RECENT_PULLS kept)."""
    _fold_into(pulls, Pull(repo, ref, nbytes, ts, ts))


def pulls_merge(stored: list[Pull], new: list[Pull]) -> list[Pull]:
    """The stored pulls with a batch's pulls folded in, by the same rule: a pull that
    straddles two batches stays one pull."""
    out = [Pull(p.repo, p.ref, p.bytes, p.first, p.last) for p in stored]
    for p in new:
        _fold_into(out, Pull(p.repo, p.ref, p.bytes, p.first, p.last))
    return out


def _fold_into(pulls: list[Pull], new: Pull) -> None:
    for p in reversed(pulls[-4:]):  # a pull's requests are close together: look back a little
        if p.repo == new.repo and new.first - p.last <= PULL_WINDOW_SECONDS and new.last >= p.first:
            p.bytes += new.bytes
            p.last = max(p.last, new.last)
            if new.ref and (not p.ref or (is_tag(new.ref) and not is_tag(p.ref))):
                p.ref = new.ref
            return
    pulls.append(new)
    if len(pulls) > RECENT_PULLS:
        del pulls[0]


# Refusals, by what the access line says. A 404 is a refusal only for a rotated-away label (on
# a current label it is an unknown image, the registry's answer); a 429 is the quota when the
# tenant was exhausted at that time, otherwise a per-accelerator limit.
class Refusal:
    EXHAUSTED = "exhausted"
    SUSPENDED = "suspended"
    ROTATED = "rotated"
    RATE_LIMITED = "rate_limited"


REFUSAL_STATUSES = (403, 404, 429)


def refusal_reason(
    *, status: int, retired: bool, exhausted_since: float | None, ts: float
) -> str | None:
    if retired:
        return Refusal.ROTATED if status == 404 else None
    if status == 403:
        return Refusal.SUSPENDED
    if status == 429:
        if exhausted_since is not None and ts >= exhausted_since - 5:
            return Refusal.EXHAUSTED
        return Refusal.RATE_LIMITED
    return None
