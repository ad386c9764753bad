from django.urls import path

from accelerator import views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("console/", views.console, name="console"),
    path("setup/<str:label>.sh", views.setup_script, name="accelerator_setup"),
    path("console/status/", views.console_status, name="console_status"),
    path("console/start/", views.start, name="accelerator_start"),
    path("console/rotate/", views.rotate, name="accelerator_rotate"),
]
