"""Render the deployment files that are not the edge's own: logrotate and the console site."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from edge import deploy

DEPLOY_DIR = Path(settings.BASE_DIR) / "deploy"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    # logrotate refuses a configuration that others can write; nginx only reads it. Not for
    # other local users either: it names the edge's files.
    tmp.chmod(0o640)
    os.replace(tmp, path)


def _owner(path: Path) -> tuple[str, str]:
    st = path.stat()
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError as exc:
        raise CommandError(f"{path} is owned by an unnamed user or group") from exc
    return user, group


class Command(BaseCommand):
    help = (
        "Write EDGE_RUN_DIR/logrotate.conf (rename rotation of the edge's logs, nginx reopened) "
        "and, with --console, the console site (SITE_URL's host over HTTPS, in front of "
        "gunicorn) into EDGE_RUN_DIR/sites/console.conf, which the edge's nginx includes."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--console", action="store_true", help="also render the console site")
        parser.add_argument(
            "--console-output",
            type=Path,
            default=None,
            help="write the console site here instead (a distribution nginx's conf.d/)",
        )

    def handle(self, *args, console: bool, console_output: Path | None, **options) -> None:
        run_dir = Path(settings.EDGE_RUN_DIR).resolve()
        logs = run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        try:
            if console or console_output:
                site = deploy.ConsoleSite(
                    site_url=settings.SITE_URL,
                    web_listen=settings.WEB_LISTEN,
                    http_listen=settings.CONSOLE_HTTP_LISTEN,
                    tls_listen=settings.CONSOLE_TLS_LISTEN,
                    tls_cert=Path(settings.CONSOLE_TLS_CERT) if settings.CONSOLE_TLS_CERT else None,
                    tls_key=Path(settings.CONSOLE_TLS_KEY) if settings.CONSOLE_TLS_KEY else None,
                    log_dir=logs,
                )
                text = deploy.console_conf(
                    (DEPLOY_DIR / "nginx" / "console.conf.template").read_text(), site
                )
                target = console_output or run_dir / "sites" / "console.conf"
                _write(target, text)
                self.stdout.write(f"console site: {target}")
            user, group = _owner(logs)
            text = deploy.logrotate_conf(
                (DEPLOY_DIR / "logrotate" / "edge.logrotate.template").read_text(),
                access_log=Path(settings.EDGE_ACCESS_LOG).resolve(),
                run_dir=run_dir,
                user=user,
                group=group,
            )
        except deploy.DeployConfigError as exc:
            raise CommandError(str(exc)) from exc
        _write(run_dir / "logrotate.conf", text)
        self.stdout.write(f"logrotate:    {run_dir / 'logrotate.conf'}")
