from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import Invite, InviteEmail, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "is_staff", "is_active", "date_joined"]
    search_fields = ["email"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]


class _InviteReadOnly(admin.ModelAdmin):
    """Invites are written by accounts.services only (credits must stay exactly-once)."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Invite)
class InviteAdmin(_InviteReadOnly):
    list_display = ["created_at", "inviter", "invitee", "credited_at", "inviter_bytes"]
    list_filter = ["credited_at"]
    search_fields = ["inviter__email", "invitee__email", "code"]
    list_select_related = ["inviter", "invitee"]


@admin.register(InviteEmail)
class InviteEmailAdmin(_InviteReadOnly):
    list_display = ["sent_at", "inviter", "email"]
    search_fields = ["inviter__email", "email"]
    list_select_related = ["inviter"]
