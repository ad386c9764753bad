"""Mirror host labels: generation and validation. Pure code, no Django imports."""

from __future__ import annotations

import base64
import re
import secrets

LABEL_LENGTH = 12  # 12 base32 characters carry 60 bits of randomness
LABEL_RE = re.compile(r"^[a-z2-7]{%d}$" % LABEL_LENGTH)


def new_label() -> str:
    """A fresh random label of 12 lowercase base32 characters (60 bits from `secrets`)."""
    return base64.b32encode(secrets.token_bytes(8)).decode("ascii").lower()[:LABEL_LENGTH]


def is_valid_label(value: str) -> bool:
    return bool(LABEL_RE.match(value))


def label_from_host(host: str, mirror_domain: str) -> str | None:
    """The tenant label of a Host header under mirror_domain, or None if it is not one.

    Host names are case-insensitive (DNS), so the label is lower-cased; a port is ignored.
    """
    if not host or len(host) > 255:
        return None
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        return None
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.lower().rstrip(".")
    suffix = "." + mirror_domain.lower()
    if not name.endswith(suffix):
        return None
    label = name[: -len(suffix)]
    return label if is_valid_label(label) else None
