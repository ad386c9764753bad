"""Render the edge's nginx and registry configs into EDGE_RUN_DIR (idempotent)."""

from __future__ import annotations

import shlex

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from edge.render import EdgeConfigError
from edge.run_dir import edge_render


class Command(BaseCommand):
    help = "Render nginx.conf, registry.yml and an initial gate map into EDGE_RUN_DIR."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--shell",
            action="store_true",
            help="print EDGE_RUN_DIR=... and the listen addresses as shell assignments",
        )

    def handle(self, *args, shell: bool, **options) -> None:
        try:
            files = edge_render()
        except EdgeConfigError as exc:
            raise CommandError(str(exc)) from exc
        if shell:
            for key, value in [
                ("EDGE_RUN_DIR", files.run_dir),
                ("EDGE_LISTEN", settings.EDGE_LISTEN),
                ("EDGE_REGISTRY_LISTEN", settings.EDGE_REGISTRY_LISTEN),
            ]:
                self.stdout.write(f"{key}={shlex.quote(str(value))}")
            return
        self.stdout.write(f"nginx:    {files.nginx_conf}")
        self.stdout.write(f"registry: {files.registry_conf}")
        self.stdout.write(f"gate map: {files.gate_map}")
