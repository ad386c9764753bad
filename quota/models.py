"""The traffic ledger's tables. The rules over them live in quota/ledger.py alone."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from accelerator.models import Tenant


class Grant(models.Model):
    """Bonus traffic. Append-only; a second grant with the same source_key changes nothing."""

    class Kind(models.TextChoices):
        INVITE = "invite", _("invite bonus")
        WELCOME = "welcome", _("welcome bonus")
        STAFF = "staff", _("staff grant")
        PROMO = "promo", _("promotion")

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="grants")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    bytes = models.BigIntegerField()
    source_key = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"], name="grant_tenant_created_idx")]
        constraints = [
            models.CheckConstraint(condition=models.Q(bytes__gt=0), name="grant_bytes_positive")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.bytes} B for {self.tenant_id}"


class UsageBucket(models.Model):
    """Traffic of one tenant through one edge in one UTC hour, pre-aggregated."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="usage_buckets")
    edge = models.CharField(max_length=64)
    hour = models.DateTimeField()
    bytes = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    cache_hits = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "edge", "hour"], name="usage_bucket_key"),
        ]
        # (tenant, hour) serves the month sums; (hour) the staff dashboard's daily totals.
        indexes = [
            models.Index(fields=["tenant", "hour"], name="usage_tenant_hour_idx"),
            models.Index(fields=["hour"], name="usage_hour_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}@{self.edge} {self.hour:%Y-%m-%d %H}h: {self.bytes} B"
