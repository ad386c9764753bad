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
