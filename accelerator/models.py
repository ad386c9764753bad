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
