"""Rebuild the monthly usage rollup from the hourly buckets (after restoring buckets by hand)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from quota import usage


class Command(BaseCommand):
    help = "Recompute quota_usagemonth from quota_usagebucket (all tenants, or --tenant ids)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tenant", type=int, action="append", dest="tenants")

    def handle(self, *args, tenants=None, **options) -> None:
        rows = usage.usage_rollup_rebuild(tenant_ids=tenants)
        self.stdout.write(f"{rows} monthly rollup rows written")
