"""Twin of the ingest beat task: `manage.py ingest_logs [--edge E --path P] [--follow]`."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ingest.services import ingest_edge


class Command(BaseCommand):
    help = "Ingest an edge's access log into the usage ledger, from the saved position."

    def add_arguments(self, parser):
        parser.add_argument("--edge", default=None, help="edge name (default: EDGE_NAME)")
        parser.add_argument("--path", default=None, help="access log (default: EDGE_ACCESS_LOG)")
        parser.add_argument(
            "--max-seconds",
            type=float,
            default=None,
            help="stop starting batches after this long (default: until caught up)",
        )
        parser.add_argument("--batch-lines", type=int, default=None)
        parser.add_argument(
            "--follow", action="store_true", help="keep going, every INGEST_INTERVAL_SECONDS"
        )
        parser.add_argument(
            "--no-enforce",
            action="store_true",
            help="do not call the ledger's enforcement after batches (bulk back-fills)",
        )

    def handle(self, *args, **opts):
        edge = settings.EDGE_NAME if opts["edge"] is None else opts["edge"]
        path = str(settings.EDGE_ACCESS_LOG) if opts["path"] is None else opts["path"]
        if opts["batch_lines"] is not None and opts["batch_lines"] < 1:
            raise CommandError("--batch-lines must be at least 1")
        max_seconds = opts["max_seconds"] if opts["max_seconds"] is not None else 10**9
        if opts["max_seconds"] is not None and opts["max_seconds"] <= 0:
            raise CommandError("--max-seconds must be positive")
        while True:
            try:
                report = ingest_edge(
                    edge=edge,
                    path=path,
                    max_seconds=max_seconds,
                    batch_lines=opts["batch_lines"],
                    enforce=not opts["no_enforce"],
                )
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(
                f"{report.edge}: {'busy' if report.busy else 'ok'} lines={report.lines} "
                f"malformed={report.malformed} unknown={report.unknown} "
                f"batches={report.batches} read_ahead={report.read_ahead_used} "
                f"in_parts={report.parsed_in_parts} "
                f"bytes_behind={report.bytes_behind} "
                f"seconds={report.seconds:.3f} lines_per_second={report.lines_per_second:.0f} "
                f"activity_lines={report.activity_lines}"
            )
            if not opts["follow"]:
                return
            time.sleep(settings.INGEST_INTERVAL_SECONDS)
