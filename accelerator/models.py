"""A tenant is one user's accelerator: a mirror host label and the state the edge gate reads."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Tenant(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active", _("active")
        SUSPENDED = "suspended", _("suspended")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tenant"
    )
    # The first label of the mirror host: <label>.<MIRROR_DOMAIN>. Secret-ish: it is the key.
    label = models.CharField(max_length=32, unique=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    suspended_reason = models.TextField(blank=True)
    # Set by quota enforcement when the allowance is spent; cleared by a grant or a new month.
    exhausted_at = models.DateTimeField(null=True, blank=True)
    # Set by quota enforcement when little is left (accelerator.gate.is_low): the edge throttles.
    low_at = models.DateTimeField(null=True, blank=True)
    # Set by quota enforcement past 80 % of the month's allowance (used rounded down to 1 % of
    # it, so the edge's map changes rarely): manifest answers carry a Warning header.
    warn_used = models.BigIntegerField(null=True, blank=True)
    warn_allowance = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Bumped by every change the gate must learn; the edge sync reads it.
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["state"], name="tenant_state_idx")]

    def __str__(self) -> str:
        return self.label


class RetiredLabel(models.Model):
    """A label that was rotated away. Never reissued; traffic to it is counted as unknown."""

    label = models.CharField(max_length=32, unique=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="retired_labels")
    retired_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.label


class TenantActivity(models.Model):
    """What the edge saw of a tenant, for its status page and the API: written by ingestion
    once per batch (accelerator.activity), never per request."""

    tenant = models.OneToOneField(
        Tenant, on_delete=models.CASCADE, primary_key=True, related_name="activity"
    )
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    # The latest client (accelerator.clients): the raw User-Agent as nginx logged it, bounded.
    user_agent = models.CharField(max_length=256, blank=True)
    client = models.CharField(max_length=16, blank=True)
    client_version = models.CharField(max_length=48, blank=True)
    client_cli_version = models.CharField(max_length=48, blank=True)
    last_pull_at = models.DateTimeField(null=True, blank=True)
    # The 20 latest pulls, oldest first: accelerator.clients.Pull.as_dict() each.
    recent_pulls = models.JSONField(default=list, blank=True)
    last_refusal_reason = models.CharField(max_length=16, blank=True)
    last_refusal_at = models.DateTimeField(null=True, blank=True)
    last_refusal_path = models.CharField(max_length=300, blank=True)
    # At most one refusal email a day (compare-and-set on this column).
    refusal_emailed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"activity of tenant {self.tenant_id}"
