from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import AccountDeletion, Invite, InviteEmail, User
from config.admin import ReadOnlyAdmin


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


@admin.register(Invite)
class InviteAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "inviter", "invitee", "credited_at", "inviter_bytes"]
    list_filter = ["credited_at"]
    search_fields = ["inviter__email", "invitee__email", "code"]
    list_select_related = ["inviter", "invitee"]


@admin.register(InviteEmail)
class InviteEmailAdmin(ReadOnlyAdmin):
    list_display = ["sent_at", "inviter", "email"]
    search_fields = ["inviter__email", "email"]
    list_select_related = ["inviter"]


@admin.register(AccountDeletion)
class AccountDeletionAdmin(ReadOnlyAdmin):
    """Deletions are run from the account page or the staff dashboard (audited), not here."""

    list_display = ["requested_at", "user", "status", "purge_after", "requested_by"]
    list_filter = ["status"]
    exclude = ["undo_nonce"]
    list_select_related = ["user", "requested_by"]
