from django.urls import path

from dashboard import views

urlpatterns = [
    path("", views.overview, name="dashboard"),
    path("tenants/", views.tenants, name="dashboard_tenants"),
    path("tenants/<int:pk>/", views.tenant_detail, name="dashboard_tenant"),
    path("tenants/<int:pk>/grant/", views.tenant_grant, name="dashboard_grant"),
    path("tenants/<int:pk>/suspend/", views.tenant_suspend, name="dashboard_suspend"),
    path("tenants/<int:pk>/resume/", views.tenant_resume, name="dashboard_resume"),
    path("tenants/<int:pk>/rotate/", views.tenant_rotate, name="dashboard_rotate"),
    path("actions/", views.actions, name="dashboard_actions"),
    path("invites/", views.invites_held, name="dashboard_invites"),
    path("invites/<int:pk>/approve/", views.invite_approve, name="dashboard_invite_approve"),
    path("invites/<int:pk>/reject/", views.invite_reject, name="dashboard_invite_reject"),
]
