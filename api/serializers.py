"""Thin parsing and rendering. Rules live in services, selectors and the ledger."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from accelerator.models import Tenant
from accounts.models import Invite
from api.models import PersonalAccessToken
from api.tokens import SCOPES
from dashboard.models import StaffAction
from quota.models import Grant


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, one message per unknown field."""

    # Query parameters that pagination reads, allowed next to the serializer's own fields.
    extra_allowed: frozenset[str] = frozenset()

    def to_internal_value(self, data):
        unknown = set(getattr(data, "keys", dict)()) - set(self.fields) - self.extra_allowed
        errors = {}
        if unknown:
            errors = {name: [_("Unknown field.")] for name in sorted(unknown)}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors = {**exc.detail, **errors}
            raise serializers.ValidationError(errors) from exc
        if errors:
            raise serializers.ValidationError(errors)
        return value


class PageQuerySerializer(StrictSerializer):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=10**9)


# --- the user's own account -------------------------------------------------------------------
class ClientSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["docker", "containerd", "podman", "skopeo", "other"])
    version = serializers.CharField()
    cli_version = serializers.CharField()  # Docker: the CLI named in UpstreamClient(...)
    name = serializers.CharField()
    user_agent = serializers.CharField()


class RefusalSerializer(serializers.Serializer):
    reason = serializers.ChoiceField(choices=["exhausted", "suspended", "rotated", "rate_limited"])
    message = serializers.CharField()
    at = serializers.DateTimeField()
    path = serializers.CharField()


class PullSerializer(serializers.Serializer):
    repository = serializers.CharField()
    reference = serializers.CharField()  # the tag, else the digest; "" when only blobs were seen
    bytes = serializers.IntegerField()
    at = serializers.DateTimeField()


class AcceleratorSerializer(serializers.Serializer):
    label = serializers.CharField()
    state = serializers.CharField()
    suspended_reason = serializers.CharField()
    exhausted = serializers.BooleanField()
    mirror_url = serializers.CharField()
    created_at = serializers.DateTimeField()
    snippets = serializers.ListField(child=serializers.DictField(child=serializers.CharField()))
    setup_url = serializers.CharField()
    first_seen_at = serializers.DateTimeField(allow_null=True)
    last_seen_at = serializers.DateTimeField(allow_null=True)
    client = ClientSerializer(allow_null=True)
    last_refusal = RefusalSerializer(allow_null=True)
    recent_pulls = PullSerializer(many=True)


class AcceleratorRotatedSerializer(AcceleratorSerializer):
    # The edge answers the old address until its next gate sync; that traffic is charged.
    old_address_stops_within_seconds = serializers.IntegerField()


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    is_staff = serializers.BooleanField()
    date_joined = serializers.DateTimeField()
    accelerator = AcceleratorSerializer(allow_null=True)


class MonthSummarySerializer(serializers.Serializer):
    used = serializers.IntegerField()
    base = serializers.IntegerField()
    bonus_left = serializers.IntegerField()
    remaining = serializers.IntegerField()
    allowance = serializers.IntegerField()
    resets_at = serializers.DateTimeField()
    overspent = serializers.IntegerField(
        help_text=_("Bytes this month that nothing paid for, carried over to next month.")
    )
    carried_over = serializers.IntegerField(
        help_text=_("Bytes carried over from last month (its overspent), charged this month.")
    )
    percent_used = serializers.IntegerField()
    exhausted = serializers.BooleanField()


class GrantSerializer(serializers.ModelSerializer):
    class Meta:
        model = Grant
        fields = ["id", "kind", "bytes", "created_at", "expires_at", "note"]


class UsageQuerySerializer(StrictSerializer):
    start = serializers.DateField(help_text=_("First day, UTC (YYYY-MM-DD)."))
    end = serializers.DateField(help_text=_("Last day, UTC, inclusive (YYYY-MM-DD)."))
    granularity = serializers.ChoiceField(choices=["hour", "day"], default="day")

    def validate(self, attrs):
        start, end, granularity = attrs["start"], attrs["end"], attrs["granularity"]
        if end < start:
            raise serializers.ValidationError({"end": [_("The end is before the start.")]})
        limit = (
            settings.API_USAGE_MAX_HOURLY_DAYS
            if granularity == "hour"
            else settings.API_USAGE_MAX_DAILY_DAYS
        )
        if (end - start).days + 1 > limit:
            raise serializers.ValidationError(
                {
                    "end": [
                        _("At most %(days)d days per request at this granularity.")
                        % {"days": limit}
                    ]
                }
            )
        return attrs


class UsagePointSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    bytes = serializers.IntegerField()
    requests = serializers.IntegerField()
    cache_hits = serializers.IntegerField()


class RegistryUsageSerializer(serializers.Serializer):
    registry = serializers.CharField(help_text=_("docker.io or another registry the edge mirrors."))
    bytes = serializers.IntegerField()
    requests = serializers.IntegerField()
    cache_hits = serializers.IntegerField()


class UsageSerializer(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField()
    granularity = serializers.CharField()
    total_bytes = serializers.IntegerField()
    points = UsagePointSerializer(many=True)
    registries = RegistryUsageSerializer(
        many=True, help_text=_("The same range's bytes split by registry, most first.")
    )


# --- tokens ---------------------------------------------------------------------------------
class TokenSerializer(serializers.ModelSerializer):
    scopes = serializers.ListField(
        source="scope_list", child=serializers.ChoiceField(choices=SCOPES), read_only=True
    )

    class Meta:
        model = PersonalAccessToken
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
        ]


class TokenCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    expires_in_days = serializers.IntegerField(min_value=1, default=90)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=SCOPES),
        min_length=1,
        max_length=len(SCOPES),
        default=["read"],
        help_text=_("read (GET), write (other methods), staff (the staff API; staff only)."),
    )

    def validate_name(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError(_("Give the token a name."))
        return value

    def validate_expires_in_days(self, value: int) -> int:
        if value > settings.API_TOKEN_MAX_DAYS:
            raise serializers.ValidationError(
                _("At most %(days)d days.") % {"days": settings.API_TOKEN_MAX_DAYS}
            )
        return value

    def expires_at(self):
        return timezone.now() + timedelta(days=self.validated_data["expires_in_days"])


class TokenCreatedSerializer(TokenSerializer):
    secret = serializers.CharField(help_text=_("Shown once: store it now."))

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "secret"]


# --- staff ----------------------------------------------------------------------------------
class StaffTenantSerializer(serializers.ModelSerializer):
    email = serializers.EmailField(source="user.email")

    class Meta:
        model = Tenant
        fields = [
            "id",
            "label",
            "email",
            "state",
            "suspended_reason",
            "exhausted_at",
            "created_at",
        ]


class StaffTenantQuerySerializer(PageQuerySerializer):
    q = serializers.CharField(required=False, max_length=254, help_text=_("Email or label."))
    state = serializers.ChoiceField(choices=Tenant.State.choices, required=False)


class ReasonSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=2000)

    def validate_reason(self, value: str) -> str:
        value = value.strip()
        if not value:
            raise serializers.ValidationError(_("Say why."))
        return value


class StaffGrantSerializer(ReasonSerializer):
    gigabytes = serializers.IntegerField(
        min_value=1, max_value=10_000, help_text=_("Bonus traffic in GB (10^9 bytes).")
    )
    expires_in_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)
    idempotency_key = serializers.RegexField(
        r"^[A-Za-z0-9_-]{8,64}$",
        required=False,
        help_text=_("Repeat a request with the same key to grant once."),
    )


class StaffActionSerializer(serializers.ModelSerializer):
    actor = serializers.EmailField(source="actor.email")
    tenant_label = serializers.CharField(source="tenant.label")

    class Meta:
        model = StaffAction
        fields = ["id", "actor", "tenant", "tenant_label", "kind", "reason", "detail", "created_at"]


class StaffHeldInviteSerializer(serializers.ModelSerializer):
    inviter = serializers.EmailField(source="inviter.email", allow_null=True, default=None)
    invitee = serializers.EmailField(source="invitee.email")
    inviter_signup_ip = serializers.IPAddressField(
        source="inviter.signup_ip", allow_null=True, default=None
    )
    invitee_signup_ip = serializers.IPAddressField(source="invitee.signup_ip", allow_null=True)

    class Meta:
        model = Invite
        fields = [
            "id",
            "inviter",
            "invitee",
            "inviter_signup_ip",
            "invitee_signup_ip",
            "created_at",
            "status",
            "reason",
            "decided_at",
        ]


# --- invites --------------------------------------------------------------------------------
class InviteeSerializer(serializers.Serializer):
    email = serializers.CharField(help_text=_("Masked."))
    signed_up_at = serializers.DateTimeField()
    verified = serializers.BooleanField()
    credited_at = serializers.DateTimeField(allow_null=True)
    earned = serializers.IntegerField()


class InviteStatsSerializer(serializers.Serializer):
    signed_up = serializers.IntegerField()
    credited = serializers.IntegerField()
    earned = serializers.IntegerField()
    cap = serializers.IntegerField()
    emails_today = serializers.IntegerField()
    emails_per_day = serializers.IntegerField()
    invite_bonus = serializers.IntegerField()
    welcome_bonus = serializers.IntegerField()


class InviteEmailSerializer(serializers.Serializer):
    email = serializers.EmailField()
    sent_at = serializers.DateTimeField()


class InvitesSerializer(serializers.Serializer):
    code = serializers.CharField()
    link = serializers.URLField()
    stats = InviteStatsSerializer()
    invitees = InviteeSerializer(many=True)
    emails = InviteEmailSerializer(many=True)


class InviteSendSerializer(StrictSerializer):
    # Checked by accounts.services.invite_email_send, which owns the rules and the messages.
    email = serializers.CharField(max_length=254)
