from django.contrib import admin
from django.urls import include, path

from accounts.language import language_set

urlpatterns = [
    path("", include("ops.urls")),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    # The language switch works for visitors too.
    path("i18n/setlang/", language_set, name="set_language"),
    path("", include("accounts.urls")),
    path("", include("accelerator.urls")),
    path("", include("api.urls")),
    path("", include("selfservice.urls")),
    path("staff/", include("dashboard.urls")),
]
