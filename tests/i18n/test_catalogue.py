"""CI fails when a string in the code has no Chinese translation, or a translation is fuzzy.

makemessages runs on a temporary copy of the project's source (never on the checkout: the
committed .po stays as it is) and merges the committed catalogue into what it extracts; any
entry left untranslated or fuzzy is a failure that names the strings.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import require
from tests.i18n.conftest import PO

ROOT = Path(settings.BASE_DIR)
# Not project source: environments, run-time data, caches, and the excluded test/bench code.
SKIP = {".venv", "venv", "var", "tests", "bench", "node_modules", "staticfiles", "__pycache__"}
MAKEMESSAGES = ["--ignore=.venv", "--ignore=var", "--ignore=tests", "--ignore=bench"]
STATS_RE = re.compile(r"(\d+) (translated|fuzzy|untranslated)")


def _copy_source(dest: Path) -> Path:
    for entry in ROOT.iterdir():
        if entry.name in SKIP or entry.name.startswith(".") or entry.name.endswith(".egg-info"):
            continue
        if entry.is_dir():
            shutil.copytree(
                entry, dest / entry.name, ignore=shutil.ignore_patterns("__pycache__", "*.mo")
            )
        else:
            shutil.copy2(entry, dest / entry.name)
    return dest


def _makemessages(tree: Path, domain: str = "django") -> None:
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "zh_Hans", "-d", domain] + MAKEMESSAGES,
        cwd=tree,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _stats(po: Path) -> dict[str, int]:
    out = subprocess.run(
        ["msgfmt", "--check", "--statistics", "-o", "/dev/null", str(po)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr  # format strings and the plural header agree
    found = {kind: int(n) for n, kind in STATS_RE.findall(out.stderr)}
    return {kind: found.get(kind, 0) for kind in ("translated", "fuzzy", "untranslated")}


def _entries(po: Path, attribute: str) -> str:
    """The entries msgattrib selects (--untranslated, --only-fuzzy), for the failure message."""
    out = subprocess.run(
        ["msgattrib", attribute, "--no-obsolete", "--no-wrap", str(po)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return "\n".join(line for line in out.stdout.splitlines() if line.startswith("msgid"))


def catalogue_problems(tree: Path) -> list[str]:
    """Run makemessages on `tree` and say what is missing or fuzzy in its zh_Hans catalogue."""
    _makemessages(tree)
    po = tree / PO.relative_to(ROOT)
    stats = _stats(po)
    problems = []
    if stats["untranslated"]:
        problems.append(f"{stats['untranslated']} untranslated:\n{_entries(po, '--untranslated')}")
    if stats["fuzzy"]:
        problems.append(f"{stats['fuzzy']} fuzzy:\n{_entries(po, '--only-fuzzy')}")
    return problems


@pytest.fixture
def tree(tmp_path):
    require(shutil.which("msgfmt") is not None, "gettext is not installed")
    return _copy_source(tmp_path / "src")


def test_every_string_in_the_code_has_a_chinese_translation(tree):
    problems = catalogue_problems(tree)
    assert problems == [], (
        "Translate these in locale/zh_Hans/LC_MESSAGES/django.po (run `manage.py makemessages "
        "-l zh_Hans --ignore=.venv --ignore=var --ignore=tests --ignore=bench` first):\n"
        + "\n".join(problems)
    )
    assert _stats(tree / PO.relative_to(ROOT))["translated"] >= 200


def test_the_check_catches_a_new_string_and_a_fuzzy_translation(tree):
    # A developer adds a string and forgets it, and a translation got marked fuzzy.
    (tree / "templates" / "i18n_probe.html").write_text(
        '{% load i18n %}{% translate "A string nobody translated yet" %}'
    )
    po = tree / PO.relative_to(ROOT)
    text = po.read_text(encoding="utf-8")
    assert '\nmsgid "Start your accelerator"\n' in text
    po.write_text(
        text.replace(
            '\nmsgid "Start your accelerator"\n', '\n#, fuzzy\nmsgid "Start your accelerator"\n'
        ),
        encoding="utf-8",
    )
    problems = catalogue_problems(tree)
    assert len(problems) == 2
    assert problems[0].startswith("1 untranslated") and "A string nobody translated" in problems[0]
    assert problems[1].startswith("1 fuzzy") and "Start your accelerator" in problems[1]


def test_committed_catalogue_header_and_plurals():
    text = PO.read_text(encoding="utf-8")
    assert '"Language: zh_Hans\\n"' in text
    # Chinese has one plural form: every plural entry has exactly msgstr[0].
    assert '"Plural-Forms: nplurals=1; plural=0;\\n"' in text
    plurals = text.count("\nmsgid_plural ")
    assert plurals >= 1 and text.count("\nmsgstr[0] ") == plurals
    assert "\nmsgstr[1] " not in text
    assert "#, fuzzy" not in text


def test_no_javascript_strings_outside_the_catalogue(tree):
    """site.js takes its texts from the page (data-confirm); a JS gettext() call would need a
    djangojs catalogue, which this test then requires to be complete."""
    _makemessages(tree, "djangojs")
    js_po = tree / "locale" / "zh_Hans" / "LC_MESSAGES" / "djangojs.po"
    if js_po.exists():
        stats = _stats(js_po)
        assert stats["untranslated"] == stats["fuzzy"] == 0, _entries(js_po, "--untranslated")
