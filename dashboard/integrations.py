"""Dashboard figures owned by other apps (invites, ingestion), read through their selectors.

Each source is optional so that the dashboard works while an app is still being built; an
absent source shows as "not available" rather than as zeros, which would be misleading.
"""

from __future__ import annotations


def dashboard_extras() -> dict:
    return {
        "credited_invites": None,
        "ingest_health": None,
        "unknown_labels": None,
    }
