"""Run the edge's token helper (bearer tokens for blob fetches from UPSTREAM_URL)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.management.base import BaseCommand

from edge.token_helper import serve


class Command(BaseCommand):
    help = "Serve upstream bearer tokens to nginx's fetch server on EDGE_TOKEN_LISTEN."

    def handle(self, *args, **options) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        serve(
            settings.EDGE_TOKEN_LISTEN,
            settings.UPSTREAM_URL,
            settings.UPSTREAM_USERNAME,
            settings.UPSTREAM_PASSWORD,
            settings.UPSTREAMS,
        )
