"""Byte units, in SI (1 GB = 10^9 bytes): the constants and sizes for people. Pure: no Django."""

from __future__ import annotations

GB = 10**9  # the unit staff grant in and the quota is sold in ("10 GB a month")

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB")


def format_bytes(value: int) -> str:
    """'0 B', '999 B', '1.5 kB', '10 GB', '12.3 GB', '1.23 TB'; negative values keep their sign.

    Three significant digits at most, trailing zeros dropped; rounding never shows "1000 MB"
    (it moves to the next unit instead).
    """
    n = int(value)
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n < 1000:
        return f"{sign}{n} B"
    exponent = 0
    scaled = float(n)
    while scaled >= 1000 and exponent < len(_UNITS) - 1:
        scaled /= 1000
        exponent += 1
    decimals = 2 if scaled < 10 else 1 if scaled < 100 else 0
    text = f"{scaled:.{decimals}f}"
    if float(text) >= 1000 and exponent < len(_UNITS) - 1:
        exponent += 1
        text = f"{scaled / 1000:.2f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{sign}{text} {_UNITS[exponent]}"
