"""Dashboard sections whose data other apps own (invites, ingestion), shaped for the page."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from dashboard import selectors


def credited_invites() -> list[dict]:
    return [
        {
            "inviter": i.inviter.email if i.inviter else "–",
            "invitee": i.invitee.email,
            "credited_at": i.credited_at,
            "inviter_bytes": i.inviter_bytes,
        }
        for i in selectors.credited_invites()
    ]


def ingest_health() -> list[dict]:
    malformed = selectors.malformed_by_edge()
    # Each edge's worker finishes an ingestion run every INGEST_INTERVAL_SECONDS, a run lasting
    # at most INGEST_RUN_SECONDS, new lines or not: no run for several of those means the
    # edge's worker (or its queue, or beat) is down. A configured edge never seen is silent too.
    quiet = max(60, 3 * (settings.INGEST_INTERVAL_SECONDS + settings.INGEST_RUN_SECONDS))
    since = timezone.now() - timedelta(seconds=quiet)
    return [
        {
            "row": row,
            "malformed": malformed.get(row.edge, {}),
            "silent": row.last_run_at is None or row.last_run_at < since,
        }
        for row in selectors.ingest_health()
    ]
