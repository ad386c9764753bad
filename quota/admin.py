"""Read-only admin for the ledger's derived tables. Grants and buckets are shown by the
dashboard app's admin; staff grant traffic through the dashboard (which calls the ledger)."""

from __future__ import annotations

from django.contrib import admin

from config.admin import ReadOnlyAdmin
from quota.models import QuotaNotice, UsageMonth


@admin.register(UsageMonth)
class UsageMonthAdmin(ReadOnlyAdmin):
    list_display = ["month", "tenant", "bytes"]
    list_filter = ["month"]
    search_fields = ["tenant__label", "tenant__user__email"]
    list_select_related = ["tenant"]
    show_full_result_count = False


@admin.register(QuotaNotice)
class QuotaNoticeAdmin(ReadOnlyAdmin):
    list_display = ["month", "tenant", "threshold", "status", "created_at", "sent_at"]
    list_filter = ["threshold", "status", "month"]
    search_fields = ["tenant__label", "tenant__user__email"]
    list_select_related = ["tenant"]
