"""Create the edges' least-privilege PostgreSQL role (ops/db_roles.py says what it may do)."""

from __future__ import annotations

import os

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from ops.db_roles import edge_role_grant


class Command(BaseCommand):
    help = (
        "Create or update the PostgreSQL role edges connect with: it writes usage and "
        "ingestion rows and reads the gate, nothing else. Run as the database owner; the "
        "password comes from the environment variable named by --password-env."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("role")
        parser.add_argument("--password-env", default="EDGE_DB_PASSWORD", metavar="VARIABLE")

    def handle(self, *args, role: str, password_env: str, **options) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("edge_db_role needs PostgreSQL (DATABASE_URL)")
        password = os.environ.get(password_env, "")
        try:
            tables = edge_role_grant(role=role, password=password)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"role {role}: {len(tables)} tables granted")
