"""Helpers of the translation tests: our own catalogue, rendering a page in each language."""

from __future__ import annotations

import gettext
import html
import re
from pathlib import Path

import pytest
from django.conf import settings

ZH = "zh-hans"
PO = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="session", autouse=True)
def compiled_catalogue():
    """The build (scripts/test.sh, scripts/run.sh) compiles locale/*.po; a bare pytest run
    compiles it here, and drops Django's cached catalogues if the file was stale."""
    from django.core.management import call_command
    from django.utils.translation import trans_real

    stale = not MO.exists() or MO.stat().st_mtime < PO.stat().st_mtime
    if stale:
        call_command("compilemessages", locale=["zh_Hans"], ignore_patterns=[".venv", "var"])
        trans_real._translations = {}
        trans_real._default = None
    yield MO


@pytest.fixture(scope="session")
def catalogue(compiled_catalogue) -> dict[str, str]:
    """Our project's own msgid -> msgstr (without Django's or allauth's), singular forms."""
    with compiled_catalogue.open("rb") as f:
        raw = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
    found: dict[str, str] = {}
    for key, value in raw.items():
        msgid = key[0] if isinstance(key, tuple) else key
        if msgid and "\x04" not in msgid:  # skip the header and context entries
            found.setdefault(msgid, value)
    return found


def visible_text(page: str) -> str:
    """What a reader sees: no scripts, styles, tags or entities."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S | re.I)
    page = re.sub(r"<[^>]+>", " ", page)
    return re.sub(r"\s+", " ", html.unescape(page))


def english_left_over(en_page: str, zh_page: str, catalogue: dict[str, str]) -> tuple[int, list]:
    """Catalogue strings visible on the English page that are still English on the Chinese one.

    Returns (how many catalogue strings the English page showed, those left untranslated).
    Strings with placeholders are skipped (they render with values filled in).
    """
    en_text, zh_text = visible_text(en_page), visible_text(zh_page)
    shown, left = 0, []
    for msgid, msgstr in catalogue.items():
        if "%(" in msgid or "%" in msgid or msgid == msgstr or len(msgid) < 3:
            continue
        pattern = r"(?<![\w-])" + re.escape(msgid) + r"(?![\w-])"
        if re.search(pattern, en_text):
            shown += 1
            if re.search(pattern, zh_text):
                left.append(msgid)
    return shown, left


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """The accounts these tests create need no real password hashing (time budget)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
