"""API v1. Views parse input, call one service or selector, and render the result."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_not_required
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, generics, serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from accelerator import selectors as accelerator_selectors
from accelerator import services as accelerator_services
from accelerator.models import Tenant
from accelerator.refusals import refusal_text
from accounts import selectors as account_selectors
from accounts import services as account_services
from accounts.models import Invite
from api import selectors, services
from api import serializers as s
from api.permissions import RecentLogin, SessionOnly, StaffOr404, TokenScopes
from dashboard import selectors as dashboard_selectors
from dashboard import services as dashboard_services
from quota import selectors as quota_selectors
from quota.errors import LedgerError
from quota.models import Grant
from quota.month import month_summary
from quota.units import GB


class Pagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500


class LoginExempt:
    """DRF authenticates by itself; the site-wide login redirect must not run first."""

    @classmethod
    def as_view(cls, **initkwargs):
        return login_not_required(super().as_view(**initkwargs))


class Scoped:
    """Every API view also checks the token's scopes (api.permissions.TokenScopes)."""

    def get_permissions(self):
        return [*super().get_permissions(), TokenScopes()]


class Base(LoginExempt, Scoped, APIView):
    pass


class ListBase(LoginExempt, Scoped, generics.ListAPIView):
    pagination_class = Pagination
    query_serializer = s.PageQuerySerializer

    def list(self, request, *args, **kwargs):
        query = self.query_serializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        self.query = query.validated_data
        return super().list(request, *args, **kwargs)


def _tenant_or_404(user) -> Tenant:
    tenant = accelerator_selectors.tenant_for_user(user=user)
    if tenant is None:
        raise exceptions.NotFound(_("Start your accelerator first."))
    return tenant


def _accelerator_data(tenant: Tenant | None) -> dict | None:
    if tenant is None:
        return None
    return {
        "label": tenant.label,
        "state": tenant.state,
        "suspended_reason": tenant.suspended_reason,
        "exhausted": tenant.exhausted_at is not None,
        "mirror_url": accelerator_selectors.mirror_url(label=tenant.label),
        "created_at": tenant.created_at,
        "snippets": [
            {
                "key": x.key,
                "title": str(x.title),
                "path": str(x.path),
                "content": x.content,
                "restart": str(x.restart),
            }
            for x in accelerator_selectors.client_snippets(label=tenant.label)
        ],
        "setup_url": accelerator_selectors.setup_url(label=tenant.label),
        **_activity_data(tenant),
    }


def _activity_data(tenant: Tenant) -> dict:
    """What the edge saw (README: "Is my accelerator working?"); nulls before the first request."""
    a = accelerator_selectors.activity_for(tenant=tenant)
    if a is None:
        return {
            "first_seen_at": None,
            "last_seen_at": None,
            "client": None,
            "last_refusal": None,
            "recent_pulls": [],
        }
    return {
        "first_seen_at": a.first_seen_at,
        "last_seen_at": a.last_seen_at,
        "client": {
            "kind": a.client or "other",
            "version": a.client_version,
            "cli_version": a.client_cli_version,
            "name": accelerator_selectors.client_display(client=a.client, version=a.client_version),
            "user_agent": a.user_agent,
        },
        "last_refusal": None
        if a.last_refusal_at is None
        else {
            "reason": a.last_refusal_reason,
            "message": refusal_text(a.last_refusal_reason),
            "at": a.last_refusal_at,
            "path": a.last_refusal_path,
        },
        "recent_pulls": accelerator_selectors.recent_pulls(activity=a),
    }


class MeView(Base):
    @extend_schema(responses=s.MeSerializer)
    def get(self, request):
        user = request.user
        tenant = accelerator_selectors.tenant_for_user(user=user)
        data = {
            "id": user.pk,
            "email": user.email,
            "is_staff": user.is_staff,
            "date_joined": user.date_joined,
            "accelerator": _accelerator_data(tenant),
        }
        return Response(s.MeSerializer(data).data)


class AcceleratorView(Base):
    @extend_schema(responses={200: s.AcceleratorSerializer})
    def get(self, request):
        return Response(
            s.AcceleratorSerializer(_accelerator_data(_tenant_or_404(request.user))).data
        )

    @extend_schema(
        request=None, responses={200: s.AcceleratorSerializer, 201: s.AcceleratorSerializer}
    )
    def post(self, request):
        """Start the accelerator. Idempotent: 201 the first time, then 200."""
        existed = accelerator_selectors.tenant_for_user(user=request.user) is not None
        tenant = accelerator_services.tenant_start(user=request.user)
        return Response(
            s.AcceleratorSerializer(_accelerator_data(tenant)).data,
            status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED,
        )


class AcceleratorRotateView(Base):
    @extend_schema(request=None, responses=s.AcceleratorRotatedSerializer)
    def post(self, request):
        """Issue a new mirror address. The old one stops working at the edge's next gate sync
        (within `old_address_stops_within_seconds`); what it serves until then is charged to
        you. At most ROTATE_PER_DAY rotations in any 24 hours (400 with `non_field_errors`)."""
        try:
            tenant = accelerator_services.tenant_rotate(tenant=_tenant_or_404(request.user))
        except accelerator_services.RotationLimited as refused:
            raise serializers.ValidationError(
                {"non_field_errors": [str(refused.message)]}
            ) from None
        data = _accelerator_data(tenant)
        data["old_address_stops_within_seconds"] = accelerator_selectors.rotation_grace_seconds()
        return Response(s.AcceleratorRotatedSerializer(data).data)


def _summary_data(tenant: Tenant) -> dict:
    summary = month_summary(tenant=tenant)
    return {
        "used": summary.used,
        "base": summary.base,
        "bonus_left": summary.bonus_left,
        "remaining": summary.remaining,
        "allowance": summary.allowance,
        "resets_at": summary.resets_at,
        "overspent": summary.overspent,
        "carried_over": summary.carried_in,
        "percent_used": summary.percent_used,
        "exhausted": summary.exhausted,
    }


class QuotaView(Base):
    @extend_schema(responses=s.MonthSummarySerializer)
    def get(self, request):
        """This month's allowance and usage, per the traffic ledger."""
        return Response(s.MonthSummarySerializer(_summary_data(_tenant_or_404(request.user))).data)


class GrantListView(ListBase):
    serializer_class = s.GrantSerializer

    @extend_schema(parameters=[s.PageQuerySerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        tenant = accelerator_selectors.tenant_for_user(user=self.request.user)
        if tenant is None:
            return Grant.objects.none()
        return quota_selectors.grants_for_tenant(tenant=tenant)


class UsageView(Base):
    @extend_schema(parameters=[s.UsageQuerySerializer], responses=s.UsageSerializer)
    def get(self, request):
        """Traffic per hour or per day between two dates (UTC, inclusive)."""
        query = s.UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        tenant = _tenant_or_404(request.user)
        points = quota_selectors.usage_series(
            tenant=tenant, start=q["start"], end=q["end"], granularity=q["granularity"]
        )
        data = {
            "start": q["start"],
            "end": q["end"],
            "granularity": q["granularity"],
            "total_bytes": sum(p.bytes for p in points),
            "points": [p.__dict__ for p in points],
            "registries": [
                r.__dict__
                for r in quota_selectors.usage_by_registry(
                    tenant=tenant, start=q["start"], end=q["end"]
                )
            ],
        }
        return Response(s.UsageSerializer(data).data)


# --- invites --------------------------------------------------------------------------------
class InvitesView(Base):
    def _link(self, request, code: str) -> str:
        return request.build_absolute_uri(reverse("invite_link", kwargs={"code": code}))

    @extend_schema(responses=s.InvitesSerializer)
    def get(self, request):
        """Your invite link, what it earned, and the invite emails you sent."""
        user = request.user
        code = account_services.invite_code_get(user=user)
        data = {
            "code": code,
            "link": self._link(request, code),
            "stats": account_selectors.invite_stats_for_user(user=user).__dict__,
            "invitees": [r.__dict__ for r in account_selectors.invitees_for_user(user=user)],
            "emails": account_selectors.invite_emails_for_user(user=user),
        }
        return Response(s.InvitesSerializer(data).data)

    @extend_schema(request=s.InviteSendSerializer, responses={201: s.InviteEmailSerializer})
    def post(self, request):
        """Send an invite email (limits and refusals as on the invites page)."""
        form = s.InviteSendSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        code = account_services.invite_code_get(user=request.user)
        try:
            record = account_services.invite_email_send(
                inviter=request.user,
                email=form.validated_data["email"],
                link=self._link(request, code),
            )
        except account_services.InviteRefused as refused:
            raise serializers.ValidationError({"email": [str(refused.message)]}) from None
        return Response(s.InviteEmailSerializer(record).data, status=status.HTTP_201_CREATED)


# --- tokens ---------------------------------------------------------------------------------
class TokenListView(ListBase):
    serializer_class = s.TokenSerializer
    permission_classes = [SessionOnly, RecentLogin]

    @extend_schema(parameters=[s.PageQuerySerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return selectors.token_list(user=self.request.user)

    @extend_schema(request=s.TokenCreateSerializer, responses={201: s.TokenCreatedSerializer})
    def post(self, request):
        """Create a token. The secret is in this response only."""
        form = s.TokenCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            issued = services.token_create(
                user=request.user,
                name=form.validated_data["name"],
                expires_at=form.expires_at(),
                scopes=form.validated_data["scopes"],
            )
        except services.TokenScopeRefused as refused:
            raise serializers.ValidationError({"scopes": [str(refused.message)]}) from None
        except services.TokenLimitReached as refused:
            raise serializers.ValidationError(
                {"non_field_errors": [str(refused.message)]}
            ) from None
        data = {**s.TokenSerializer(issued.token).data, "secret": issued.secret}
        return Response(data, status=status.HTTP_201_CREATED)


class TokenRevokeView(Base):
    permission_classes = [SessionOnly]

    @extend_schema(responses={204: None})
    def delete(self, request, pk: int):
        if not services.token_revoke(user=request.user, token_id=pk):
            raise exceptions.NotFound()
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- staff ----------------------------------------------------------------------------------
class StaffOverviewView(Base):
    permission_classes = [StaffOr404]

    @extend_schema(
        responses=inline_serializer(
            "StaffOverview",
            {
                "users": serializers.IntegerField(),
                "tenants": serializers.IntegerField(),
                "active_accelerators": serializers.IntegerField(),
                "suspended": serializers.IntegerField(),
                "today_bytes": serializers.IntegerField(),
                "month_bytes": serializers.IntegerField(),
                "tenants_with_traffic": serializers.IntegerField(),
                "cache_hit_permille": serializers.IntegerField(allow_null=True),
                "daily": serializers.ListField(child=serializers.DictField()),
            },
        )
    )
    def get(self, request):
        traffic = dashboard_selectors.dashboard_traffic()
        data = dashboard_selectors.dashboard_totals(traffic=traffic)
        data["daily"] = [{"day": d, "bytes": b} for d, b in traffic["daily"]]
        return Response(data)


class StaffTenantListView(ListBase):
    permission_classes = [StaffOr404]
    serializer_class = s.StaffTenantSerializer
    query_serializer = s.StaffTenantQuerySerializer

    @extend_schema(parameters=[s.StaffTenantQuerySerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        query = getattr(self, "query", {})
        return dashboard_selectors.tenant_search(q=query.get("q", ""), state=query.get("state", ""))


def _staff_tenant(pk: int) -> Tenant:
    return get_object_or_404(Tenant.objects.select_related("user"), pk=pk)


class StaffTenantView(Base):
    permission_classes = [StaffOr404]

    @extend_schema(
        responses=inline_serializer(
            "StaffTenantDetail",
            {"tenant": s.StaffTenantSerializer(), "quota": s.MonthSummarySerializer()},
        )
    )
    def get(self, request, pk: int):
        tenant = _staff_tenant(pk)
        return Response(
            {
                "tenant": s.StaffTenantSerializer(tenant).data,
                "quota": s.MonthSummarySerializer(_summary_data(tenant)).data,
            }
        )


class StaffActionBase(Base):
    permission_classes = [StaffOr404]
    form_class = s.ReasonSerializer

    def act(self, *, actor, tenant, data):
        raise NotImplementedError

    def post(self, request, pk: int):
        tenant = _staff_tenant(pk)
        form = self.form_class(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            action = self.act(actor=request.user, tenant=tenant, data=form.validated_data)
        except LedgerError as refused:
            raise serializers.ValidationError({"non_field_errors": [str(refused)]}) from None
        return Response(s.StaffActionSerializer(action).data, status=status.HTTP_201_CREATED)


def _staff_schema(form):
    return extend_schema(request=form, responses={201: s.StaffActionSerializer})


class StaffGrantView(StaffActionBase):
    form_class = s.StaffGrantSerializer

    @_staff_schema(s.StaffGrantSerializer)
    def post(self, request, pk: int):
        """Grant bonus traffic (via the ledger), recorded in the audit trail."""
        return super().post(request, pk)

    def act(self, *, actor, tenant, data):
        days = data.get("expires_in_days")
        return dashboard_services.staff_grant(
            actor=actor,
            tenant=tenant,
            bytes=data["gigabytes"] * GB,
            reason=data["reason"],
            expires_at=timezone.now() + timedelta(days=days) if days else None,
            idempotency_key=data.get("idempotency_key"),
        )


class StaffSuspendView(StaffActionBase):
    @_staff_schema(s.ReasonSerializer)
    def post(self, request, pk: int):
        return super().post(request, pk)

    def act(self, *, actor, tenant, data):
        return dashboard_services.staff_suspend(actor=actor, tenant=tenant, reason=data["reason"])


class StaffResumeView(StaffActionBase):
    @_staff_schema(s.ReasonSerializer)
    def post(self, request, pk: int):
        return super().post(request, pk)

    def act(self, *, actor, tenant, data):
        return dashboard_services.staff_resume(actor=actor, tenant=tenant, reason=data["reason"])


class StaffRotateView(StaffActionBase):
    @_staff_schema(s.ReasonSerializer)
    def post(self, request, pk: int):
        return super().post(request, pk)

    def act(self, *, actor, tenant, data):
        return dashboard_services.staff_rotate(actor=actor, tenant=tenant, reason=data["reason"])


class StaffActionListView(ListBase):
    permission_classes = [StaffOr404]
    serializer_class = s.StaffActionSerializer

    @extend_schema(parameters=[s.PageQuerySerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return dashboard_selectors.recent_actions(limit=None)


class StaffHeldInviteListView(ListBase):
    permission_classes = [StaffOr404]
    serializer_class = s.StaffHeldInviteSerializer

    @extend_schema(parameters=[s.PageQuerySerializer])
    def get(self, request, *args, **kwargs):
        """Invite credits held by a risk signal, waiting for a decision."""
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return dashboard_selectors.held_invites()


class StaffInviteDecisionBase(Base):
    permission_classes = [StaffOr404]
    decide = None

    def post(self, request, pk: int):
        invite = get_object_or_404(Invite, pk=pk)
        form = s.ReasonSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            action = type(self).decide(
                actor=request.user, invite=invite, reason=form.validated_data["reason"]
            )
        except LedgerError as refused:
            raise serializers.ValidationError({"non_field_errors": [str(refused)]}) from None
        return Response(s.StaffActionSerializer(action).data, status=status.HTTP_201_CREATED)


class StaffInviteApproveView(StaffInviteDecisionBase):
    decide = dashboard_services.staff_invite_approve

    @_staff_schema(s.ReasonSerializer)
    def post(self, request, pk: int):
        """Pay a held invite credit, once; a repeat returns the first record."""
        return super().post(request, pk)


class StaffInviteRejectView(StaffInviteDecisionBase):
    decide = dashboard_services.staff_invite_reject

    @_staff_schema(s.ReasonSerializer)
    def post(self, request, pk: int):
        """Reject a held invite credit: nothing is paid."""
        return super().post(request, pk)
