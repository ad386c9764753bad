"""Start-up checks for DJANGO_DEBUG=false: every production setting present and safe."""

from __future__ import annotations

from typing import Any

from config.env import ConfigError, env_bool, env_int, env_str

REQUIRED_ENV = [
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "MIRROR_DOMAIN",
    "EMAIL_HOST",
    "DEFAULT_FROM_EMAIL",
    "SITE_URL",  # links in emails sent by tasks; the console site's host name
]


# An edge (ACCELERATOR_ROLE=edge) signs nothing and sends no mail: it is not given the
# control plane's secrets (README "Threat model").
NOT_FOR_EDGES = {"DJANGO_SECRET_KEY", "EMAIL_HOST", "DEFAULT_FROM_EMAIL", "SITE_URL"}


def check_production_settings(settings: dict[str, Any]) -> None:
    """Raise ConfigError naming every missing or unsafe production setting at once."""
    if settings.get("ACCELERATOR_ROLE") == "edge":
        _edge_settings(settings)
        required = [name for name in REQUIRED_ENV if name not in NOT_FOR_EDGES]
    else:
        required = REQUIRED_ENV
    problems = [f"{name} is not set" for name in required if not env_str(name).strip()]
    secret = settings["SECRET_KEY"] if settings.get("ACCELERATOR_ROLE") == "edge" else None
    secret = secret or env_str("DJANGO_SECRET_KEY")
    # The same bar as Django's own deployment check (security.W009).
    if secret and (
        secret == settings["DEV_SECRET_KEY"] or len(secret) < 50 or len(set(secret)) < 5
    ):
        problems.append(
            "DJANGO_SECRET_KEY is the development key, shorter than 50 characters "
            "or too simple (generate one: "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))')"
        )
    if env_str("DATABASE_URL").startswith("sqlite"):
        problems.append("DATABASE_URL must point at PostgreSQL in production, not SQLite")
    site_url = env_str("SITE_URL").strip()
    if site_url and not site_url.startswith("https://"):
        # Session and CSRF cookies are Secure in production: an http console cannot log in.
        problems.append("SITE_URL must be the console's https:// address in production")
    if env_str("CELERY_BROKER_URL").startswith("filesystem"):
        problems.append("CELERY_BROKER_URL must be a real broker (Redis) in production")
    if any(kind in settings["EMAIL_BACKEND"] for kind in ("console", "locmem", "filebased")):
        problems.append("EMAIL_BACKEND must send real mail in production (SMTP)")
    if problems:
        raise ConfigError(
            "Production settings (DJANGO_DEBUG=false) are incomplete:\n  - "
            + "\n  - ".join(problems)
            + "\nSee .env.example and the README's configuration table."
        )
    settings.update(
        SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
        SESSION_COOKIE_SECURE=True,
        CSRF_COOKIE_SECURE=True,
        SECURE_SSL_REDIRECT=env_bool("DJANGO_SECURE_SSL_REDIRECT", True),
        SECURE_HSTS_SECONDS=env_int("DJANGO_HSTS_SECONDS", 31536000),
        SECURE_HSTS_INCLUDE_SUBDOMAINS=True,
        SECURE_HSTS_PRELOAD=True,
        # Staff pages and the admin need TOTP (issue 14): a stolen staff password is not enough.
        STAFF_MFA_REQUIRED=True,
    )


def _edge_settings(settings: dict[str, Any]) -> None:
    """An edge process: a key of its own (it signs nothing that outlives it, and never holds
    the control plane's), and no mail at all."""
    import secrets

    if env_str("DJANGO_SECRET_KEY"):
        raise ConfigError(
            "ACCELERATOR_ROLE=edge: DJANGO_SECRET_KEY must not be given to an edge (it would "
            "let a compromised edge forge the console's sessions); remove it from its env files"
        )
    settings["SECRET_KEY"] = secrets.token_urlsafe(50)
    settings["EMAIL_BACKEND"] = "django.core.mail.backends.dummy.EmailBackend"
    settings["EMAIL_HOST_PASSWORD"] = ""
