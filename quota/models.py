"""The traffic ledger's tables. The arithmetic over them lives in quota/month.py alone."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accelerator.models import Tenant


class Grant(models.Model):
    """Bonus traffic. Append-only; a second grant with the same source_key changes nothing."""

    class Kind(models.TextChoices):
        INVITE = "invite", _("invite bonus")
        WELCOME = "welcome", _("welcome bonus")
        STAFF = "staff", _("staff grant")
        PROMO = "promo", _("promotion")

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="grants", db_index=False
    )  # the (tenant, created_at) index serves tenant lookups
    kind = models.CharField(max_length=16, choices=Kind.choices)
    bytes = models.BigIntegerField()
    source_key = models.CharField(max_length=200, unique=True)
    # A default rather than auto_now_add, so the ledger (and its tests) can state the time.
    created_at = models.DateTimeField(default=timezone.now)
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
    """Traffic of one tenant through one edge in one UTC hour from one registry,
    pre-aggregated."""

    # No single-column index: the (tenant, hour) index serves tenant lookups, and with both
    # the planner picked the narrower one and read a tenant's whole history for one month.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="usage_buckets", db_index=False
    )
    edge = models.CharField(max_length=64)
    hour = models.DateTimeField()
    # The registry the edge routed to (docker.io or a name in UPSTREAMS; "" for a name it does
    # not mirror, which is refused and free). Rows from before registries were routed are
    # Docker Hub's.
    registry = models.CharField(max_length=64, default="docker.io", db_default="docker.io")
    bytes = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    cache_hits = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "edge", "hour", "registry"], name="usage_bucket_key"
            ),
        ]
        # (tenant, hour) serves the month sums; (hour) the staff dashboard's daily totals. The
        # table keeps room in its pages (fillfactor, migration 0005): a catch-up adds to the
        # same hour's rows batch after batch, and an update that fits its page touches no index.
        indexes = [
            models.Index(fields=["tenant", "hour"], name="usage_tenant_hour_idx"),
            models.Index(fields=["hour"], name="usage_hour_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}@{self.edge} {self.hour:%Y-%m-%d %H}h: {self.bytes} B"


class UsageMonth(models.Model):
    """Rollup of UsageBucket per (tenant, UTC calendar month), written by usage_apply in
    the same transaction as the buckets, so the two always agree.

    It keeps the month summary flat as history grows (one row per month instead of up to
    744 hours x edges) and serves the staff dashboard's per-month aggregates.
    """

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="usage_months", db_index=False
    )  # the unique (tenant, month) key is the index
    month = models.DateField()  # the first day of the month
    bytes = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "month"], name="usage_month_key"),
        ]
        # (month): "top tenants this month" and "tenants over N bytes" read one month's rows.
        # Not (month, bytes): every batch adds to the bytes of thousands of rows, and with no
        # index on them PostgreSQL updates each in place (HOT, with the fillfactor set in
        # migration 0005) instead of adding an entry to every index.
        indexes = [models.Index(fields=["month"], name="usage_month_idx")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.month:%Y-%m}: {self.bytes} B"


class QuotaNotice(models.Model):
    """One row per tenant, month and threshold: the unique key makes each email happen once."""

    class Threshold(models.IntegerChoices):
        # A literal percent sign, not a format: msgfmt would otherwise demand "% u" back.
        # xgettext:no-python-format
        WARN = 80, _("80 % used")
        # xgettext:no-python-format
        EXHAUSTED = 100, _("100 % used")

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        SENDING = "sending", _("sending")
        SENT = "sent", _("sent")
        # 80 % and 100 % were crossed by the same batch: only the 100 % email goes out.
        SKIPPED = "skipped", _("skipped")

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="quota_notices")
    month = models.DateField()
    threshold = models.PositiveSmallIntegerField(choices=Threshold.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "month", "threshold"], name="quota_notice_once"
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="quota_notice_status_idx")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.month:%Y-%m} {self.threshold} %: {self.status}"
