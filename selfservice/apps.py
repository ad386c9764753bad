from django.apps import AppConfig


class SelfserviceConfig(AppConfig):
    name = "selfservice"
    verbose_name = "Your account"
