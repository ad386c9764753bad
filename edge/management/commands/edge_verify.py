"""Run the edge's digest check (every blob cache fill passes through it)."""

from __future__ import annotations

import logging

from django.core.management.base import BaseCommand

from edge import render as edge_config
from edge.blob_verify import serve
from edge.run_dir import edge_params


class Command(BaseCommand):
    help = "Check blob cache fills against their digests, on EDGE_VERIFY_LISTEN."

    def handle(self, *args, **options) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        params = edge_params()
        params.validate()  # the listeners and slice size nginx is rendered with
        serve(
            params.verify_listen,
            params.fetch_listen,
            params.cache_dir,
            edge_config.slice_bytes(params.slice_size),
        )
