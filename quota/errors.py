"""The ledger's one exception: a call with values it refuses (shown to staff as is)."""

from __future__ import annotations


class LedgerError(ValueError):
    """A ledger call with values it refuses; the message is safe to show to staff."""
