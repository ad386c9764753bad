"""Admin for the audit trail, and read-only admin for the ledger's raw tables.

The ledger is append-only and owned by the quota app: the admin may show it, never edit it.
If the quota app registers its own admin, that one wins.
"""

from __future__ import annotations

from django.contrib import admin

from config.admin import ReadOnlyAdmin
from dashboard.models import StaffAction
from ingest.models import EdgeIngest, LogFile, MalformedCount, MalformedSample, UnknownTraffic
from quota.models import Grant, UsageBucket


@admin.register(StaffAction)
class StaffActionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor", "tenant", "kind", "reason"]
    list_filter = ["kind"]
    search_fields = ["tenant__label", "actor__email", "reason"]
    list_select_related = ["actor", "tenant"]


class GrantAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "tenant", "kind", "bytes", "expires_at", "source_key"]
    list_filter = ["kind"]
    search_fields = ["tenant__label", "source_key"]
    list_select_related = ["tenant"]


class UsageBucketAdmin(ReadOnlyAdmin):
    list_display = ["hour", "tenant", "edge", "bytes", "requests", "cache_hits"]
    search_fields = ["tenant__label"]
    list_select_related = ["tenant"]
    # Millions of rows: no full count on every page.
    show_full_result_count = False


class IngestAdmin(ReadOnlyAdmin):
    """Ingestion's cursors and counters: written only by ingest (services, batch, files, health)."""


_RAW = [
    (Grant, GrantAdmin),
    (UsageBucket, UsageBucketAdmin),
    (EdgeIngest, IngestAdmin),
    (LogFile, IngestAdmin),
    (MalformedCount, IngestAdmin),
    (MalformedSample, IngestAdmin),
    (UnknownTraffic, IngestAdmin),
]
for model, model_admin in _RAW:
    if not admin.site.is_registered(model):
        admin.site.register(model, model_admin)
