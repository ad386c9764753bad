"""What the control plane knows of each edge's own state: its last gate sync and reloads, and
how full its blob cache is (written by the edge's worker; exported by ops.metrics)."""

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
