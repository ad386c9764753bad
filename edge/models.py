"""What the control plane knows of each edge's own state: its last gate sync and reloads, how
full its blob cache is, and what its digest check's fills did (written by the edge's worker;
exported by ops.metrics)."""

from __future__ import annotations

from django.db import models


class EdgeState(models.Model):
    """One row per edge, updated by every gate sync that runs on it."""

    edge = models.CharField(max_length=64, unique=True)
    gate_synced_at = models.DateTimeField(null=True, blank=True)
    gate_reloads_total = models.BigIntegerField(default=0)  # map changed and nginx signalled
    gate_tenants = models.IntegerField(default=0)
    cache_bytes = models.BigIntegerField(default=0)  # files in EDGE_CACHE_DIR
    cache_max_bytes = models.BigIntegerField(default=0)  # EDGE_CACHE_MAX_SIZE
    cache_measured_at = models.DateTimeField(null=True, blank=True)
    # The digest check's counters (edge.blob_verify.COUNTERS), added up across its restarts,
    # and its last reading (to add only what is new); its fill memory in use.
    fill_counts = models.JSONField(default=dict, blank=True)
    fill_reading = models.JSONField(default=dict, blank=True)
    fill_memory_bytes = models.BigIntegerField(default=0)
    verify_read_at = models.DateTimeField(null=True, blank=True)  # its last answer
    verify_error = models.CharField(max_length=200, blank=True)  # why the last read failed

    def __str__(self) -> str:
        return self.edge


class UpstreamAllowance(models.Model):
    """An upstream's pull allowance as this edge last read it (edge/allowance.py)."""

    edge = models.CharField(max_length=64)
    registry = models.CharField(max_length=64)
    limit = models.BigIntegerField(null=True, blank=True)  # ratelimit-limit; None: not sent
    remaining = models.BigIntegerField(null=True, blank=True)  # ratelimit-remaining
    window_seconds = models.IntegerField(null=True, blank=True)
    error = models.CharField(max_length=200, blank=True)
    checked_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["edge", "registry"], name="upstream_allowance_key")
        ]

    def __str__(self) -> str:
        return f"{self.edge} {self.registry}: {self.remaining}/{self.limit}"

    def warn(self, percent: int) -> bool:
        """At or below ``percent`` % of the limit left (or none left at all)."""
        if self.limit is None or self.remaining is None:
            return False
        return self.remaining * 100 <= self.limit * percent
