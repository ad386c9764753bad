from django.apps import AppConfig


class QuotaConfig(AppConfig):
    name = "quota"

    def ready(self) -> None:
        from quota import receivers  # noqa: F401 - connects the invite credit receiver
