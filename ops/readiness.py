"""/readyz's checks: can this process reach the database, the cache and the broker?"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from kombu import Connection

TIMEOUT_SECONDS = 3


def _database() -> None:
    conn = connections["default"]
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        conn.close()  # a broken persistent connection: the next check dials again
        raise


def _cache() -> None:
    key = f"ops:readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", 10)
    if cache.get(key) != "1":
        raise RuntimeError("the cache did not return what was just stored")
    cache.delete(key)


def _broker() -> None:
    with Connection(
        settings.CELERY_BROKER_URL,
        transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        connect_timeout=TIMEOUT_SECONDS,
    ) as conn:
        conn.ensure_connection(max_retries=1, timeout=TIMEOUT_SECONDS)


CHECKS = {"database": _database, "cache": _cache, "broker": _broker}


def readiness_check() -> dict[str, str]:
    """Each dependency's state: "ok" or the error, one line."""
    result = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:
            result[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            result[name] = "ok"
    return result
