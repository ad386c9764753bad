from django.contrib import admin

from accelerator.models import RetiredLabel, Tenant, TenantActivity


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["label", "user", "state", "exhausted_at", "created_at"]
    list_filter = ["state"]
    search_fields = ["label", "user__email"]
    readonly_fields = ["label", "created_at", "updated_at"]


@admin.register(RetiredLabel)
class RetiredLabelAdmin(admin.ModelAdmin):
    list_display = ["label", "tenant", "retired_at"]
    search_fields = ["label"]


@admin.register(TenantActivity)
class TenantActivityAdmin(admin.ModelAdmin):
    list_display = ["tenant", "client", "client_version", "last_seen_at", "last_refusal_reason"]
    readonly_fields = [f.name for f in TenantActivity._meta.fields]
