"""Every environment variable the settings read is documented in .env.example and the README."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READ = re.compile(r"""env_(?:str|int|bool|list)\(\s*["']([A-Z0-9_]+)["']""")
# Named by the production checks' messages, so it must stay documented however it is read.
EXTRA = {"EMAIL_BACKEND"}


def setting_names() -> set[str]:
    sources = [ROOT / "config" / "settings.py", ROOT / "config" / "production.py"]
    return {name for path in sources for name in READ.findall(path.read_text())} | EXTRA


def test_settings_read_some_variables():
    assert {"DATABASE_URL", "MIRROR_DOMAIN", "EDGE_ACCESS_LOG"} <= setting_names()


def test_every_variable_is_in_env_example():
    documented = set(re.findall(r"^([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert sorted(setting_names() - documented) == []


def test_every_variable_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in sorted(setting_names()) if f"`{name}`" not in readme]
    assert missing == []
