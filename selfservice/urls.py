from django.urls import path

from selfservice import views

urlpatterns = [
    path("account/", views.account_page, name="account_page"),
    path("account/export/", views.export_download, name="account_export"),
    path("account/delete/", views.delete, name="account_delete"),
    path("account/deleted/", views.deleted, name="account_deleted"),
    path("account/undo/<str:token>/", views.undo_delete, name="account_undo_delete"),
    path("api/v1/me/export/", views.ExportView.as_view(), name="api_me_export"),
    path("staff/accounts/<int:pk>/delete/", views.staff_delete, name="staff_account_delete"),
    path(
        "api/v1/staff/tenants/<int:pk>/delete-account/",
        views.StaffDeleteView.as_view(),
        name="api_staff_delete_account",
    ),
]
