"""Shared fixtures. Tests run on real PostgreSQL and Redis (see scripts/test.sh)."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, why: str) -> None:
    """Skip when a real part is missing on a developer machine; fail under CI=true."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required for this test under CI: {why}")
    pytest.skip(why)


PASSWORD = "correct-horse-battery-9"


def _user(django_user_model, email: str, verified: bool = True):
    from allauth.account.models import EmailAddress

    user = django_user_model.objects.create_user(email=email, password=PASSWORD)
    EmailAddress.objects.create(user=user, email=email, verified=verified, primary=True)
    return user


@pytest.fixture
def owner(django_user_model):
    return _user(django_user_model, "owner@example.com")


@pytest.fixture
def stranger(django_user_model):
    return _user(django_user_model, "stranger@example.com")


@pytest.fixture
def staff(django_user_model):
    user = _user(django_user_model, "staff@example.com")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture(autouse=True)
def _clear_cache():
    """Rate-limit counters live in the cache; each test starts with none."""
    from django.core.cache import cache

    cache.clear()
    yield


# --- a real browser ---------------------------------------------------------------------------
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# Every Content-Security-Policy violation in any browser context of a test fails that test: the
# page's own report (securitypolicyviolation) and Chromium's console error, whichever arrives.
CSP_VIOLATIONS: list[str] = []
_CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolation(`${e.effectiveDirective} blocked ${e.blockedURI || "inline"} `
    + `in ${e.documentURI} (${e.sourceFile}:${e.lineNumber})`);
});
"""


def _watch_csp(context) -> None:
    context.expose_function("__cspViolation", lambda text: CSP_VIOLATIONS.append(text))
    context.add_init_script(_CSP_LISTENER)
    context.on(
        "console",
        lambda msg: (
            CSP_VIOLATIONS.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )


@pytest.fixture(autouse=True)
def _no_csp_violation():
    CSP_VIOLATIONS.clear()
    yield
    if CSP_VIOLATIONS:
        found = list(CSP_VIOLATIONS)
        CSP_VIOLATIONS.clear()
        pytest.fail("Content-Security-Policy violations:\n" + "\n".join(found))


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium driven by Playwright (its own browser download does not work here)."""
    import shutil

    executable = shutil.which("chromium")
    require(executable is not None, "chromium is not installed (apt-get install chromium)")
    # Playwright's sync API keeps an event loop in this thread; Django's ORM calls from the
    # test body are still synchronous, so allow them.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        # Every context, the tests' own extra ones included, watches for CSP violations.
        new_context = browser.new_context

        def watched_context(**kwargs):
            context = new_context(**kwargs)
            _watch_csp(context)
            return context

        browser.new_context = watched_context
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, live_server):
    """A fresh browser context on the live server, with clipboard access."""
    context = chromium.new_context(base_url=live_server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def api(client):
    """A test client that sends a bearer token: api(token).get(url, ...)."""

    class Api:
        def __init__(self, token: str | None):
            self.headers = {"Authorization": f"Bearer {token}"} if token else {}

        def get(self, url, data=None):
            return client.get(url, data, headers=self.headers)

        def post(self, url, data=None):
            return client.post(
                url, data or {}, content_type="application/json", headers=self.headers
            )

        def delete(self, url):
            return client.delete(url, headers=self.headers)

    return Api


@pytest.fixture
def eager_tasks():
    """Run Celery tasks in the test's process (after commit, as in production)."""
    from config.celery import app

    old = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = old
