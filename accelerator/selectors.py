"""Reads about tenants: the mirror URL, ready-to-paste client configuration, rotations."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from accelerator.models import RetiredLabel, Tenant
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


def client_snippets(*, label: str) -> list[ClientSnippet]:
    url = mirror_url(label=label)
    host = mirror_host(label=label)
    insecure = settings.MIRROR_SCHEME == "http"
    podman = (
        '[[registry]]\nprefix = "docker.io"\nlocation = "registry-1.docker.io"\n\n'
        f'[[registry.mirror]]\nlocation = "{host}"\n' + ("insecure = true\n" if insecure else "")
    )
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
        ClientSnippet(
            "containerd",
            _("containerd"),
            "/etc/containerd/certs.d/docker.io/hosts.toml",
            'server = "https://registry-1.docker.io"\n\n'
            f'[host."{url}"]\n  capabilities = ["pull", "resolve"]\n',
            "sudo systemctl restart containerd",
        ),
        ClientSnippet(
            "podman",
            _("Podman"),
            "/etc/containers/registries.conf",
            podman,
            _("No restart needed: podman reads it on every pull"),
        ),
    ]
