"""The client address behind the real console nginx (TRUSTED_PROXY_COUNT=1): one client's
failed logins lock out that client, not everyone; a forged X-Forwarded-For changes nothing.

Clients are told apart by their loopback source address (127.x.y.z are all loopback on Linux):
nginx appends the address it saw, which is what gunicorn's Django must key its limits on.
"""

from __future__ import annotations

import http.client
import random
import re
import socket
import ssl
import uuid
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.conftest import PASSWORD, _user
from tests.deploy.test_rendered_configs import (  # noqa: F401 (fixtures)
    CONSOLE,
    ROOT,
    _require,
    console_stack,
    production_like,
    render_all,
    workdir,
)

TOO_MANY = b"Too many failed login attempts"


class Browser:
    """One client: its own loopback source address and cookie jar, HTTPS through nginx."""

    def __init__(self, port: int, cafile: Path, source: str) -> None:
        self.port, self.cafile, self.source = port, cafile, source
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, *, form: dict | None = None, headers=None):
        ctx = ssl.create_default_context(cafile=str(self.cafile))
        sock = socket.create_connection(
            ("127.0.0.1", self.port), 10, source_address=(self.source, 0)
        )
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=20)
        conn.sock = ctx.wrap_socket(sock, server_hostname=CONSOLE)
        sent = {"Host": CONSOLE, **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
            sent["Referer"] = f"https://{CONSOLE}{path}"
        try:
            conn.request(method, path, body=body, headers=sent)
            resp = conn.getresponse()
            data = resp.read()
            for value in resp.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(value).items():
                    self.cookies[name] = morsel.value
            return resp.status, resp.headers, data
        finally:
            conn.close()

    def login(self, email: str, password: str):
        status, _headers, body = self.request("GET", "/accounts/login/")
        assert status == 200, body[:300]
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1)
        return self.request(
            "POST",
            "/accounts/login/",
            form={"csrfmiddlewaretoken": token.decode(), "login": email, "password": password},
        )


def _loopback() -> str:
    # A fresh address per run: counters of another run in the shared cache cannot interfere.
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


@pytest.fixture
def console(production_like, transactional_db):  # noqa: F811
    _require("nginx")
    settings, cert = production_like
    stack = console_stack(
        settings, render_all(), TRUSTED_PROXY_COUNT="1", API_THROTTLE_ANON="5/min"
    )
    with stack:
        yield int(settings.EDGE_TLS_LISTEN.rsplit(":", 1)[1]), cert


def test_ten_failed_logins_from_one_client_do_not_stop_anothers_login(console, django_user_model):
    port, cert = console
    _user(django_user_model, "victim@example.com")
    attacker = Browser(port, cert, _loopback())
    for _ in range(10):
        # Distinct unknown addresses: only the per-address limit is at stake here.
        status, _h, body = attacker.login(f"{uuid.uuid4().hex}@example.com", "wrong-password")
        assert status == 200 and b"not correct" in body
    # The attacker is locked out, even with the right password...
    status, _h, body = attacker.login("victim@example.com", PASSWORD)
    assert status == 200 and TOO_MANY in body
    # ...and so is the attacker claiming another address: nginx appends what it saw.
    status, _h, body = attacker.request(
        "GET", "/accounts/login/", headers={"X-Forwarded-For": "198.51.100.9"}
    )
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    status, _h, body = attacker.request(
        "POST",
        "/accounts/login/",
        form={"csrfmiddlewaretoken": token, "login": "victim@example.com", "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.9"},
    )
    assert status == 200 and TOO_MANY in body
    # Another client logs in at once.
    status, headers, body = Browser(port, cert, _loopback()).login("victim@example.com", PASSWORD)
    assert status == 302, body[:500]
    assert headers["Location"] == "/console/"


def test_the_anonymous_api_throttle_cannot_be_dodged_with_a_forged_forwarded_for(console):
    port, cert = console
    client = Browser(port, cert, _loopback())
    statuses = [
        client.request("GET", "/api/schema/", headers={"X-Forwarded-For": f"203.0.113.{n}"})[0]
        for n in range(6)
    ]
    # API_THROTTLE_ANON=5/min (the schema is open to anyone): five answers, then 429 whatever
    # address the client claimed.
    assert statuses == [200] * 5 + [429]
    # Another client is not throttled by the first one's requests.
    assert Browser(port, cert, _loopback()).request("GET", "/api/schema/")[0] == 200


def test_the_sign_up_ip_is_the_address_nginx_saw(console, django_user_model):
    port, cert = console
    source = _loopback()
    visitor = Browser(port, cert, source)
    status, _h, body = visitor.request("GET", "/accounts/signup/")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    status, _h, body = visitor.request(
        "POST",
        "/accounts/signup/",
        form={
            "csrfmiddlewaretoken": token,
            "email": "new@example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
        # What the client claims is not what nginx saw.
        headers={"X-Forwarded-For": "198.51.100.9"},
    )
    assert status == 302, body[:500]
    assert django_user_model.objects.get(email="new@example.com").signup_ip == source
