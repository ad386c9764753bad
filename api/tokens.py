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


# Scopes: `read` for safe methods, `write` for the others, `staff` in addition for the staff
# API (/api/v1/staff/, staff users only). A token holds a subset, stored space-separated.
SCOPES = ("read", "write", "staff")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def scopes_parse(text: str) -> frozenset[str]:
    """The scopes in a stored value; unknown words are dropped (they grant nothing)."""
    return frozenset(word for word in text.split() if word in SCOPES)


def scopes_format(scopes: frozenset[str] | set[str]) -> str:
    return " ".join(scope for scope in SCOPES if scope in scopes)


def scopes_needed(*, method: str, staff_api: bool) -> frozenset[str]:
    needed = {"read" if method.upper() in SAFE_METHODS else "write"}
    if staff_api:
        needed.add("staff")
    return frozenset(needed)
