"""Pure token format: generation and parsing. No Django imports."""

from __future__ import annotations

import hashlib
import re
import secrets

# "mat_" makes a leaked token recognisable by secret scanners; 43 url-safe chars = 256 bits.
TOKEN_PREFIX = "mat_"
_TOKEN_RE = re.compile(r"^mat_[A-Za-z0-9_-]{43}$")
DISPLAY_PREFIX_LEN = 12


def token_generate() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_is_well_formed(raw: str) -> bool:
    return bool(_TOKEN_RE.match(raw))


def token_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("ascii")).hexdigest()
