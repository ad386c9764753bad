from django.apps import AppConfig


class AcceleratorConfig(AppConfig):
    name = "accelerator"
