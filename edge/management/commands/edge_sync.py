"""Twin of the beat task edge.tasks.edge_gate_sync: write the gate map, reload nginx."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from edge.gate_sync import gate_sync, gate_sync_loop


class Command(BaseCommand):
    help = (
        "Render the tenant gate into EDGE_RUN_DIR/gate.map and reload nginx when it changed. "
        "With --loop SECONDS, repeat every --interval seconds for that long, riding out "
        "database outages (nginx keeps its last map)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--loop", type=float, default=0.0, metavar="SECONDS")
        parser.add_argument(
            "--forever",
            action="store_true",
            help="keep syncing until stopped: for an edge on its own machine, as a service",
        )
        parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS")

    def handle(self, *args, loop: float, forever: bool, interval: float, **options) -> None:
        if loop < 0 or interval <= 0:
            raise CommandError("--loop must be >= 0 and --interval > 0")
        if forever:
            loop = float("inf")
        if loop:
            failures = gate_sync_loop(seconds=loop, interval=interval)
            self.stdout.write(f"gate sync loop done, {failures} failed rounds")
            return
        result = gate_sync()
        self.stdout.write(
            f"{result.tenants} tenants, changed={result.changed}, reloaded={result.reloaded}"
        )
