"""The current request's id (or Celery task's id): one context variable, read by the logs."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

current: ContextVar[str] = ContextVar("request_id", default="")

# What is taken from X-Request-ID as it is (nginx's $request_id is 32 hex digits).
_VALID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id_pick(*, header: str | None) -> str:
    """The id a proxy gave, when it is a sane one; otherwise a new one."""
    if header and _VALID.match(header):
        return header
    return uuid.uuid4().hex
