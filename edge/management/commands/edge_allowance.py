"""Read the upstreams' ratelimit headers from this edge now (twin of the beat task)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from edge.allowance import allowance_probe


class Command(BaseCommand):
    help = "HEAD each UPSTREAM_RATELIMIT_PROBES manifest and record ratelimit-limit/remaining."

    def handle(self, *args, **options) -> None:
        for row in allowance_probe():
            shown = f"{row.remaining}/{row.limit}" if row.limit is not None else "not reported"
            self.stdout.write(
                f"{row.registry}: {shown}{' (' + row.error + ')' if row.error else ''}"
            )
