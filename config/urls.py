from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path

from accounts.language import language_set

# /admin/ signs in through allauth's login: its rate limits (per client address) hold for staff
# too, and a login stage added there (a second factor) cannot be walked around here.
admin.site.login = secure_admin_login(admin.site.login)

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
