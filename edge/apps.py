"""The edge app: deploying an edge (rendered configs, gate-map sync, token helper)."""

from django.apps import AppConfig


class EdgeConfig(AppConfig):
    name = "edge"
