"""The edge's own registry errors carry a Simplified Chinese sentence after the English one.

nginx cannot run gettext and Docker sends no Accept-Language, so every message is bilingual:
"<English> / <Chinese>", with the Chinese written as JSON \\u escapes (the template stays ASCII).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from edge import render as edge_config
from tests.conftest import require
from tests.e2e import harness

TEMPLATE = harness.DEPLOY / "nginx" / "edge.conf.template"
CJK = re.compile(r"[\u4e00-\u9fff]")
# `return <status> '<body>';` in the nginx config: the body is a single-quoted nginx string.
RETURN_RE = re.compile(r"return (\d{3}) '((?:[^'\\]|\\.)*)';")


def _nginx_unquote(text: str) -> str:
    """What nginx makes of a single-quoted string: \\" \\' \\\\ lose the backslash, \\n is a
    newline, anything else (\\u) stays as written."""
    return re.sub(
        r"\\(.)",
        lambda m: (
            {"n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1]) if m[1] in "\"'\\ntr" else "\\" + m[1]
        ),
        text,
    )


def _params(workdir: Path) -> edge_config.EdgeParams:
    return harness.edge_params(
        workdir, upstream_url="http://127.0.0.1:9", name="i18n", mirror_domain="m.localhost"
    )


def _messages(conf: str) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for status, body in RETURN_RE.findall(conf):
        for error in json.loads(_nginx_unquote(body))["errors"]:
            found.setdefault(int(status), []).append(error["message"])
    return found


def test_template_is_ascii_and_every_error_message_is_english_then_chinese(tmp_path):
    raw = TEMPLATE.read_bytes()
    assert raw.isascii(), "write Chinese as JSON \\u escapes: the template is read as ASCII"
    conf = edge_config.nginx_conf(raw.decode(), _params(tmp_path))
    messages = _messages(conf)
    # Every refusal the gate and nginx produce: 400, 403, 404, 405, 429, 502.
    assert {400, 403, 404, 405, 429, 502} <= set(messages)
    for status, texts in messages.items():
        for text in texts:
            english, sep, chinese = text.partition(" / ")
            assert sep, (status, text)
            assert re.search(r"[a-z]{3}", english) and not CJK.search(english), (status, text)
            assert CJK.search(chinese), (status, text)


def test_nginx_serves_the_bilingual_message_as_valid_json():
    require(harness.which("nginx") is not None, "nginx is not installed")
    workdir = harness.worker_readable_dir("i18n-edge-")
    params = _params(workdir)
    nginx = harness.start_nginx(params)
    try:
        port = int(params.listen.rsplit(":", 1)[1])
        unknown = harness.request(
            port, "GET", "/v2/library/nginx/manifests/latest", host="nosuchtenant.m.localhost"
        )
        method = harness.request(port, "DELETE", "/v2/", host="nosuchtenant.m.localhost")
    finally:
        nginx.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    assert unknown.status == 404
    assert unknown.headers["Content-Type"].startswith("application/json")
    message = unknown.json()["errors"][0]["message"]
    assert message.startswith("unknown accelerator host")
    assert "未知的加速地址" in message
    # The gate refuses an unknown host before the method check: same bilingual 404.
    assert method.status == 404 and "未知的加速地址" in method.json()["errors"][0]["message"]
