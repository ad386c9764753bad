"""Rendering of the deployment's generated files besides the edge's own: the console site
(nginx server blocks for SITE_URL's host, HTTPS) and the edge's logrotate configuration.

Pure code, no Django imports: the command (deploy_render) and the tests pass values in.
Placeholders are filled by edge.render.fill, which refuses a missing value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edge.render import fill

_LISTEN_RE = re.compile(r"^((\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):)?\d{1,5}$")
_HOST_RE = re.compile(r"^[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63})*$")
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_UNSAFE = " ;'\"{}$\n\t"


class DeployConfigError(ValueError):
    """A setting that would produce a broken or unsafe configuration; says which."""


def _path(name: str, value: Path | None) -> str:
    if value is None or not str(value):
        raise DeployConfigError(f"{name} is not set")
    if not Path(value).is_absolute() or any(c in str(value) for c in _UNSAFE):
        raise DeployConfigError(f"{name} must be an absolute path without spaces: {value}")
    return str(value)


def _listen(name: str, value: str) -> str:
    if not _LISTEN_RE.match(value or ""):
        raise DeployConfigError(f"{name} must be host:port or a port, not {value!r}")
    return value


def console_host(site_url: str) -> str:
    """The host name of SITE_URL (https only), which is the console's server_name."""
    parts = urlsplit(site_url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not _HOST_RE.match(host):
        raise DeployConfigError(
            f"SITE_URL must be https://<console host>, not {site_url!r} (the console site is "
            "HTTPS only)"
        )
    return host


@dataclass(frozen=True)
class ConsoleSite:
    site_url: str
    web_listen: str  # gunicorn
    http_listen: str
    tls_listen: str
    tls_cert: Path | None
    tls_key: Path | None
    log_dir: Path


def console_conf(template: str, site: ConsoleSite) -> str:
    return fill(
        template,
        {
            "CONSOLE_HOST": console_host(site.site_url),
            "WEB_LISTEN": _listen("WEB_LISTEN", site.web_listen),
            "HTTP_LISTEN": _listen("CONSOLE_HTTP_LISTEN", site.http_listen),
            "TLS_LISTEN": _listen("CONSOLE_TLS_LISTEN", site.tls_listen),
            "TLS_CERT": _path("CONSOLE_TLS_CERT", site.tls_cert),
            "TLS_KEY": _path("CONSOLE_TLS_KEY", site.tls_key),
            "LOG_DIR": _path("the log directory", site.log_dir),
        },
    )


def logrotate_conf(template: str, *, access_log: Path, run_dir: Path, user: str, group: str) -> str:
    for label, name in (("user", user), ("group", group)):
        if not _NAME_RE.match(name):
            raise DeployConfigError(f"the log directory's {label} {name!r} is not a valid name")
    return fill(
        template,
        {
            "ACCESS_LOG": _path("EDGE_ACCESS_LOG", access_log),
            "LOG_DIR": _path("EDGE_RUN_DIR", run_dir / "logs"),
            "PID_FILE": _path("EDGE_RUN_DIR", run_dir / "nginx.pid"),
            "LOG_USER": user,
            "LOG_GROUP": group,
        },
    )
