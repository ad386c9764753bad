"""The audit trail of staff actions: who did what to which tenant, when and why."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from accelerator.models import Tenant


class StaffAction(models.Model):
    class Kind(models.TextChoices):
        GRANT = "grant", _("grant traffic")
        SUSPEND = "suspend", _("suspend")
        RESUME = "resume", _("resume")
        ROTATE = "rotate", _("rotate label")
        INVITE_APPROVE = "invite_approve", _("approve invite credit")
        INVITE_REJECT = "invite_reject", _("reject invite credit")
        DELETE_ACCOUNT = "delete_account", _("delete account")

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="staff_actions"
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="staff_actions")
    kind = models.CharField(_("action"), max_length=16, choices=Kind.choices)
    reason = models.TextField(_("reason"))
    # What the action did, for the record: grant bytes and source key, old and new label, the
    # invite decided (its tenant is the invitee's).
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "created_at"], name="staffaction_tenant_idx")]

    def __str__(self) -> str:
        return f"{self.actor} {self.kind} {self.tenant_id}"
