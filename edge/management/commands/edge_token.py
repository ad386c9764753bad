"""Run the edge's token helper (bearer tokens for blob fetches from UPSTREAM_URL)."""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from edge.render import EdgeConfigError, is_loopback
from edge.run_dir import edge_files
from edge.token_helper import read_secret, serve


class Command(BaseCommand):
    help = (
        "Serve upstream bearer tokens to nginx's fetch server on EDGE_TOKEN_LISTEN (loopback "
        "only), to requests carrying the edge's internal secret (run edge_render first)."
    )

    def handle(self, *args, **options) -> None:
        if not is_loopback(settings.EDGE_TOKEN_LISTEN):
            raise CommandError(
                f"EDGE_TOKEN_LISTEN must be a loopback address, not {settings.EDGE_TOKEN_LISTEN!r}"
            )
        secret_file = edge_files(Path(settings.EDGE_RUN_DIR).resolve()).internal_secret
        try:
            secret = read_secret(str(secret_file))
        except OSError as exc:
            raise CommandError(f"{secret_file}: {exc.strerror}; run edge_render first") from exc
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        try:
            serve(
                settings.EDGE_TOKEN_LISTEN,
                settings.UPSTREAM_URL,
                settings.UPSTREAM_USERNAME,
                settings.UPSTREAM_PASSWORD,
                settings.UPSTREAMS,
                secret=secret,
            )
        except (ValueError, EdgeConfigError) as exc:
            raise CommandError(str(exc)) from exc
