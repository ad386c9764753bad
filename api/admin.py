from django.contrib import admin

from api.models import PersonalAccessToken


@admin.register(PersonalAccessToken)
class PersonalAccessTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix", "scopes", "created_at", "expires_at", "revoked_at"]
    search_fields = ["name", "user__email", "prefix"]
    list_select_related = ["user"]
    # The digest is never shown; staff can revoke (set revoked_at) but not forge.
    fields = [
        "user",
        "name",
        "prefix",
        "scopes",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    readonly_fields = [name for name in fields if name != "revoked_at"]

    def has_add_permission(self, request) -> bool:
        return False
