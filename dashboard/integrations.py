"""Dashboard figures owned by other apps (invites, ingestion), read from their tables."""

from __future__ import annotations

from dashboard import selectors


def dashboard_extras() -> dict:
    return {
        "credited_invites": [
            {
                "inviter": i.inviter.email if i.inviter else "–",
                "invitee": i.invitee.email,
                "credited_at": i.credited_at,
                "inviter_bytes": i.inviter_bytes,
            }
            for i in selectors.credited_invites()
        ],
        "ingest_health": None,
        "unknown_labels": None,
    }
