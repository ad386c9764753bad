"""Reads about tenants: the mirror URL, ready-to-paste client configuration, rotations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from accelerator.models import RetiredLabel, Tenant, TenantActivity
from accounts.models import User

_DEFAULT_PORTS = {"http": 80, "https": 443}


def tenant_for_user(*, user: User) -> Tenant | None:
    return Tenant.objects.filter(user=user).first()


def retired_labels(*, tenant: Tenant, limit: int = 20) -> QuerySet[RetiredLabel]:
    """The tenant's rotated-away labels, newest first: the record of its rotations."""
    return RetiredLabel.objects.filter(tenant=tenant).order_by("-retired_at", "-id")[:limit]


def mirror_host(*, label: str) -> str:
    """host[:port] of a tenant's mirror, as clients must dial it."""
    host = f"{label}.{settings.MIRROR_DOMAIN}"
    if _DEFAULT_PORTS[settings.MIRROR_SCHEME] != settings.MIRROR_PORT:
        host += f":{settings.MIRROR_PORT}"
    return host


def mirror_url(*, label: str) -> str:
    return f"{settings.MIRROR_SCHEME}://{mirror_host(label=label)}"


# Beyond the sync interval: beat's schedule, a queued task, nginx's reload.
_GATE_SYNC_MARGIN_SECONDS = 10


def rotation_grace_seconds() -> int:
    """How long, at most, the edge keeps answering a label after it is rotated away: until its
    next gate sync. What it serves until then is still charged to the tenant."""
    return settings.EDGE_GATE_SYNC_SECONDS + _GATE_SYNC_MARGIN_SECONDS


@dataclass(frozen=True)
class ClientSnippet:
    key: str
    title: str
    path: str
    content: str
    restart: str


def mirrored_registries() -> list[str]:
    """docker.io and the registries in UPSTREAMS, in the operator's order."""
    return ["docker.io", *(u.name for u in settings.UPSTREAMS)]


def client_snippets(*, label: str) -> list[ClientSnippet]:
    url = mirror_url(label=label)
    host = mirror_host(label=label)
    insecure = settings.MIRROR_SCHEME == "http"
    others = mirrored_registries()[1:]
    return [
        ClientSnippet(
            "docker",
            _("Docker on Linux"),
            "/etc/docker/daemon.json",
            '{\n  "registry-mirrors": ["%s"]\n}\n' % url,
            "sudo systemctl daemon-reload && sudo systemctl restart docker",
        ),
        ClientSnippet(
            "ubuntu",
            _("Ubuntu (older Docker, /etc/default/docker)"),
            "/etc/default/docker",
            f'DOCKER_OPTS="--registry-mirror={url}"\n',
            "sudo service docker restart",
        ),
        ClientSnippet(
            "boot2docker",
            _("Boot2Docker"),
            "/var/lib/boot2docker/profile",
            f'EXTRA_ARGS="--registry-mirror={url}"\n',
            "sudo /etc/init.d/docker restart",
        ),
        ClientSnippet(
            "desktop",
            _("Docker Desktop (macOS, Windows)"),
            _("Settings → Docker Engine, add this key to the JSON"),
            '"registry-mirrors": ["%s"]\n' % url,
            _("Click “Apply & restart”"),
        ),
        *_docker_prefixed(host=host, insecure=insecure, others=others),
        ClientSnippet(
            "containerd",
            _("containerd (every registry)"),
            "/etc/containerd/certs.d/_default/hosts.toml",
            # No server line: containerd falls back to each image's own registry, and asks
            # this host first with ?ns=<registry> for every one.
            f'[host."{url}"]\n  capabilities = ["pull", "resolve"]\n',
            _("Needs the config_path line (next tab); then: sudo systemctl restart containerd"),
        ),
        ClientSnippet(
            "containerd-config",
            _("containerd 1.x: config_path"),
            "/etc/containerd/config.toml",
            # Without it the CRI plugin (Kubernetes) ignores certs.d altogether.
            '[plugins."io.containerd.grpc.v1.cri".registry]\n'
            '  config_path = "/etc/containerd/certs.d"\n',
            "sudo systemctl restart containerd",
        ),
        ClientSnippet(
            "k3s",
            _("k3s"),
            "/etc/rancher/k3s/registries.yaml",
            "mirrors:\n"
            + "".join(
                f'  "{name}":\n    endpoint:\n      - "{url}"\n' for name in mirrored_registries()
            ),
            _("sudo systemctl restart k3s (k3s-agent on agent nodes)"),
        ),
        ClientSnippet(
            "podman",
            _("Podman, CRI-O"),
            "/etc/containers/registries.conf.d/50-accelerator.conf",
            _podman_dropin(host=host, insecure=insecure, others=others),
            _(
                "A new file; keep registries.conf as it is. Podman reads it on every pull; "
                "CRI-O: sudo systemctl reload crio"
            ),
        ),
    ]


def _podman_dropin(*, host: str, insecure: bool, others: list[str]) -> str:
    """One [[registry]] per registry; each mirror is this host, with the registry's name as a
    path prefix for all but Docker Hub (the edge routes by it)."""
    flag = "insecure = true\n" if insecure else ""
    blocks = [
        '[[registry]]\nprefix = "docker.io"\nlocation = "registry-1.docker.io"\n\n'
        f'[[registry.mirror]]\nlocation = "{host}"\n{flag}'
    ]
    blocks += [
        f'[[registry]]\nprefix = "{name}"\nlocation = "{name}"\n\n'
        f'[[registry.mirror]]\nlocation = "{host}/{name}"\n{flag}'
        for name in others
    ]
    return "\n".join(blocks)


def _docker_prefixed(*, host: str, insecure: bool, others: list[str]) -> list[ClientSnippet]:
    """Docker's registry-mirrors covers Docker Hub only: other registries are pulled by
    prefixing the image name with this host and the registry's name."""
    if not others:
        return []
    lines = [f"docker pull {host}/{name}/<repository>:<tag>\n" for name in others]
    note = (
        _('Plain http: also add "insecure-registries": ["%(host)s"] to /etc/docker/daemon.json')
        % {"host": host}
        if insecure
        else _("Nothing to restart")
    )
    return [
        ClientSnippet(
            "docker-prefixed",
            _("Docker: other registries"),
            _("No file: prefix the image name"),
            "".join(lines),
            note,
        )
    ]


# --- what the edge saw: the status card and the API's accelerator resource -------------------
_CLIENT_NAMES = {
    "docker": "Docker",
    "containerd": "containerd",
    "podman": "Podman",
    "skopeo": "skopeo",
}


@dataclass(frozen=True)
class ConsoleCommand:
    key: str
    title: str
    command: str


def setup_url(*, label: str) -> str:
    return f"{settings.SITE_URL.rstrip('/')}/setup/{label}.sh"


def setup_commands(*, label: str) -> list[ConsoleCommand]:
    """The one-line setup, detecting every client, then one per client."""
    line = f"curl -fsSL {setup_url(label=label)} | sudo sh"
    return [
        ConsoleCommand("all", _("Every client found on the machine"), line),
        ConsoleCommand("docker", "Docker", f"{line} -s -- docker"),
        ConsoleCommand("containerd", "containerd", f"{line} -s -- containerd"),
        ConsoleCommand("podman", "Podman", f"{line} -s -- podman"),
    ]


def first_pull_commands() -> list[ConsoleCommand]:
    """A pull that goes through the accelerator, per client: the console waits for it."""
    return [
        ConsoleCommand("docker", "Docker", "docker pull hello-world"),
        ConsoleCommand(
            "containerd",
            "containerd",
            "sudo ctr images pull --hosts-dir /etc/containerd/certs.d "
            "docker.io/library/hello-world:latest",
        ),
        ConsoleCommand("podman", "Podman", "podman pull docker.io/library/hello-world"),
    ]


def client_display(*, client: str, version: str) -> str:
    """ "Docker 24.0.7", "containerd 1.6.20", or the generic name of an unknown client."""
    name = _CLIENT_NAMES.get(client)
    if name is None:
        return str(_("another client"))
    return f"{name} {version}".strip()


def activity_for(*, tenant: Tenant) -> TenantActivity | None:
    return TenantActivity.objects.filter(tenant=tenant).first()


def recent_pulls(*, activity: TenantActivity | None) -> list[dict]:
    """The latest pulls, newest first, with aware datetimes (the stored list is oldest first)."""
    if activity is None:
        return []
    out = []
    for p in reversed(activity.recent_pulls):
        if not isinstance(p, dict):
            continue
        out.append(
            {
                "repository": p.get("repository", ""),
                "reference": p.get("reference", ""),
                "bytes": p.get("bytes", 0),
                "at": datetime.fromtimestamp(p.get("last", 0), tz=UTC),
            }
        )
    return out
