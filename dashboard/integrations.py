"""Dashboard sections whose data other apps own (invites, ingestion), shaped for the page."""

from __future__ import annotations

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
    return [
        {"row": row, "malformed": malformed.get(row.edge, {})} for row in selectors.ingest_health()
    ]
