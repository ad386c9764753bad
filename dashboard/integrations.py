"""Dashboard sections whose data other apps own (invites, ingestion), shaped for the page."""

from __future__ import annotations

from dashboard import selectors


def dashboard_extras() -> dict:
    malformed = selectors.malformed_by_edge()
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
        "ingest_health": [
            {"row": row, "malformed": malformed.get(row.edge, {})}
            for row in selectors.ingest_health()
        ],
        "malformed_samples": selectors.malformed_samples(),
        "unknown_labels": selectors.unknown_label_traffic(),
    }
