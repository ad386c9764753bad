from django.contrib.auth.decorators import login_not_required
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from api import views, web

v1 = "api/v1/"
urlpatterns = [
    path(f"{v1}me/", views.MeView.as_view(), name="api_me"),
    path(f"{v1}accelerator/", views.AcceleratorView.as_view(), name="api_accelerator"),
    path(
        f"{v1}accelerator/rotate/",
        views.AcceleratorRotateView.as_view(),
        name="api_accelerator_rotate",
    ),
    path(f"{v1}quota/", views.QuotaView.as_view(), name="api_quota"),
    path(f"{v1}quota/grants/", views.GrantListView.as_view(), name="api_grants"),
    path(f"{v1}usage/", views.UsageView.as_view(), name="api_usage"),
    path(f"{v1}invites/", views.InvitesView.as_view(), name="api_invites"),
    path(f"{v1}tokens/", views.TokenListView.as_view(), name="api_tokens"),
    path(f"{v1}tokens/<int:pk>/", views.TokenRevokeView.as_view(), name="api_token_revoke"),
    path(f"{v1}staff/overview/", views.StaffOverviewView.as_view(), name="api_staff_overview"),
    path(f"{v1}staff/tenants/", views.StaffTenantListView.as_view(), name="api_staff_tenants"),
    path(f"{v1}staff/tenants/<int:pk>/", views.StaffTenantView.as_view(), name="api_staff_tenant"),
    path(
        f"{v1}staff/tenants/<int:pk>/grant/",
        views.StaffGrantView.as_view(),
        name="api_staff_grant",
    ),
    path(
        f"{v1}staff/tenants/<int:pk>/suspend/",
        views.StaffSuspendView.as_view(),
        name="api_staff_suspend",
    ),
    path(
        f"{v1}staff/tenants/<int:pk>/resume/",
        views.StaffResumeView.as_view(),
        name="api_staff_resume",
    ),
    path(
        f"{v1}staff/tenants/<int:pk>/rotate/",
        views.StaffRotateView.as_view(),
        name="api_staff_rotate",
    ),
    path(f"{v1}staff/actions/", views.StaffActionListView.as_view(), name="api_staff_actions"),
    path(
        f"{v1}staff/invites/held/",
        views.StaffHeldInviteListView.as_view(),
        name="api_staff_invites_held",
    ),
    path(
        f"{v1}staff/invites/<int:pk>/approve/",
        views.StaffInviteApproveView.as_view(),
        name="api_staff_invite_approve",
    ),
    path(
        f"{v1}staff/invites/<int:pk>/reject/",
        views.StaffInviteRejectView.as_view(),
        name="api_staff_invite_reject",
    ),
    path(
        "api/schema/",
        login_not_required(SpectacularAPIView.as_view(permission_classes=[])),
        name="api_schema",
    ),
    path(
        "api/docs/",
        login_not_required(
            SpectacularSwaggerSplitView.as_view(url_name="api_schema", permission_classes=[])
        ),
        name="api_docs",
    ),
    # The console page where a user creates and revokes tokens (browser session).
    path("console/tokens/", web.tokens, name="api_tokens_page"),
    path("console/tokens/<int:pk>/revoke/", web.token_revoke, name="api_token_revoke_page"),
]
