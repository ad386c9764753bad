from django.urls import path, re_path

from accounts import views

urlpatterns = [
    path("invites/", views.invites, name="invites"),
    # With or without a trailing slash: links get pasted both ways.
    re_path(r"^invite/(?P<code>[^/]*)/?$", views.invite_link, name="invite_link"),
]
