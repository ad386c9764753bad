"""Pieces every benchmark shares: the FIGURE line bench/run.py collects, a scratch database."""

from __future__ import annotations

import json
import os
from urllib.parse import urlparse


def figure(name: str, value, unit: str, target="", note: str = "", digits: int = 3) -> None:
    """One row of `make bench`'s table (bench/run.py reads the FIGURE lines)."""
    if isinstance(value, float):
        value = round(value, digits)
    row = {"name": name, "value": value, "unit": unit, "target": target, "note": note}
    print("FIGURE " + json.dumps(row), flush=True)


def recreate_database(url: str) -> None:
    """Drop and create the bench's own PostgreSQL database (never the test or app one)."""
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(database_url: str, redis_url: str | None = None) -> None:
    """Django on the bench database, migrated; tasks never leave the process."""
    os.environ["DATABASE_URL"] = database_url
    if redis_url is not None:
        os.environ["REDIS_URL"] = redis_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
