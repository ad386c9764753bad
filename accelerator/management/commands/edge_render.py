"""Render the edge's nginx and registry configs into EDGE_RUN_DIR (idempotent)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from accelerator.edge import edge_render
from accelerator.edge_config import EdgeConfigError


class Command(BaseCommand):
    help = "Render nginx.conf, registry.yml and an initial gate map into EDGE_RUN_DIR."

    def handle(self, *args, **options) -> None:
        try:
            files = edge_render()
        except EdgeConfigError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"nginx:    {files.nginx_conf}")
        self.stdout.write(f"registry: {files.registry_conf}")
        self.stdout.write(f"gate map: {files.gate_map}")
