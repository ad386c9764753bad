"""Production settings refuse to start without their secrets; the defaults start anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Set by the browser fixtures for the test process only; never part of a deployment.
NOT_INHERITED = {"DJANGO_ALLOW_ASYNC_UNSAFE", "EMAIL_BACKEND"}

PRODUCTION_ENV = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "pF3q-9xZ_k2LmW8vRt6YhN1cJd0sBe4uGa7oQi5EnKy_TzXwVb",
    "DJANGO_ALLOWED_HOSTS": "accelerator.example.io",
    "DATABASE_URL": "postgres://app@db.internal/app",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "CELERY_BROKER_URL": "redis://cache.internal:6379/1",
    "MIRROR_DOMAIN": "m.example.io",
    "EMAIL_HOST": "smtp.example.io",
    "DEFAULT_FROM_EMAIL": "Accelerator <noreply@example.io>",
    "SITE_URL": "https://accelerator.example.io",
}


def start_django(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV and k not in NOT_INHERITED
    }
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_settings_start_when_complete():
    result = start_django(PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


@pytest.mark.parametrize("missing", sorted(set(PRODUCTION_ENV) - {"DJANGO_DEBUG"}))
def test_production_settings_refuse_to_start_without(missing):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    result = start_django(env)
    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr


@pytest.mark.parametrize(
    "override, message",
    [
        (
            {"DJANGO_SECRET_KEY": "dev-only-insecure-key-do-not-use-in-production"},
            "development key",
        ),
        ({"DJANGO_SECRET_KEY": "short"}, "shorter than 50"),
        ({"DATABASE_URL": "sqlite:///db.sqlite3"}, "PostgreSQL"),
        ({"CELERY_BROKER_URL": "filesystem://"}, "real broker"),
        ({"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}, "real mail"),
        ({"EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend"}, "real mail"),
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG must be true or false"),
        ({"MIRROR_SCHEME": "ftp"}, "MIRROR_SCHEME must be http or https"),
        ({"MIRROR_PORT": "eighty"}, "MIRROR_PORT must be a whole number"),
        ({"SITE_URL": "http://accelerator.example.io"}, "SITE_URL must be the console's https"),
        ({"EDGES": "east,east"}, "EDGES: 'east' is listed twice"),
        ({"EDGES": "east,we st"}, "not an edge name"),
        ({"TRUSTED_PROXY_COUNT": "-1"}, "TRUSTED_PROXY_COUNT must be between 0 and 5"),
        ({"TRUSTED_PROXY_COUNT": "99"}, "TRUSTED_PROXY_COUNT must be between 0 and 5"),
        ({"TRUSTED_PROXY_COUNT": "one"}, "TRUSTED_PROXY_COUNT must be a whole number"),
        ({"TRUSTED_PROXY_COUNT": "1; DROP"}, "TRUSTED_PROXY_COUNT must be a whole number"),
    ],
)
def test_production_settings_refuse_unsafe_values(override, message):
    result = start_django({**PRODUCTION_ENV, **override})
    assert result.returncode != 0
    assert message in result.stderr


def test_defaults_start_without_any_environment(tmp_path):
    result = start_django({"VAR_DIR": str(tmp_path), "DATABASE_URL": "", "REDIS_URL": ""})
    assert result.returncode == 0, result.stderr


def test_check_deploy_is_clean_with_production_settings():
    clean = {
        k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV and k not in NOT_INHERITED
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**clean, **PRODUCTION_ENV},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("override", "expected"), [({}, "1 1"), ({"TRUSTED_PROXY_COUNT": "2"}, "2 2")]
)
def test_one_proxy_count_drives_allauth_and_drf(override, expected):
    clean = {
        k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV and k not in NOT_INHERITED
    }
    clean.pop("TRUSTED_PROXY_COUNT", None)
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.ALLAUTH_TRUSTED_PROXY_COUNT, s.REST_FRAMEWORK['NUM_PROXIES'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **PRODUCTION_ENV, **override},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.split("\n")[0] == expected, result.stderr
