"""Django settings, read from the environment.

Defaults make a first run work on a fresh checkout: SQLite, DEBUG on, console email, a file
cache and Celery on kombu's serverless filesystem broker. With DJANGO_DEBUG=false every
production setting must be present, or start-up fails with a message naming what is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy

from config.beat import beat_schedule
from config.edges import EdgesError, edges_parse
from config.env import ConfigError, env_bool, env_int, env_list, env_str
from config.upstreams import (
    DOCKER_HUB,
    UpstreamError,
    parse_deny,
    parse_probes,
    parse_upstreams,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"

DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = env_str("DJANGO_SECRET_KEY", DEV_SECRET_KEY)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "accounts",
    "accelerator",
    "edge",
    "quota",
    "ingest",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "api",
    "dashboard",
    "selfservice",
    "ops",
    "csp",
]

MIDDLEWARE = [
    # First: every response (and log line) of the request carries its id; latency measured.
    "ops.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "accounts.language.UserLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # After the session and user: staff pages want a second factor where it is required.
    "accounts.second_factor.StaffSecondFactorMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

# --- Content-Security-Policy (django-csp) ----------------------------------------------------
# Scripts, styles and everything else from this site only: no inline script or style (a
# script injected into a page runs nowhere), no plugins, no framing, forms post here only.
# data: images are Swagger UI's icons.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}

# --- database -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", "")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL or f"sqlite:///{VAR_DIR / 'db.sqlite3'}", conn_max_age=60
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache: rate limits and gate state ------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    # A file cache is shared by every gunicorn worker, so rate limits hold across processes.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# --- accounts -------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
# The email is unique regardless of case through a functional unique constraint, which the
# plain uniqueness check cannot see.
SILENCED_SYSTEM_CHECKS = ["auth.W004"]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # Not a rule: Django's hook after every new password, which revokes the API tokens.
    {"NAME": "api.passwords.NewPasswordRevokesTokens"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "console"
ACCOUNT_LOGOUT_REDIRECT_URL = "landing"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
# The brand in the reader's language ("[镜像加速器] "), evaluated when each email is written.
ACCOUNT_EMAIL_SUBJECT_PREFIX = format_lazy("[{}] ", gettext_lazy("Mirror Accelerator"))
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
# One account per mailbox (accounts/addresses.py): sign-up and "add an address" treat an alias
# of an existing account's address as that address.
ACCOUNT_FORMS = {"signup": "accounts.forms.SignupForm", "add_email": "accounts.forms.AddEmailForm"}
# allauth's rate limits are on by default and stored in the Django cache above.
# Two-factor sign-in (allauth.mfa): an authenticator app (TOTP) and recovery codes, offered to
# everyone on the account page and asked at login once enabled.
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Mirror Accelerator"
# A code from the period before or after is accepted too (RFC 6238 5.2: transmission delay and
# a phone's clock a little off); each code still works only once.
MFA_TOTP_TOLERANCE = 1
# Staff reach /staff/ and /admin/ only with TOTP, used in this session's login. On in
# production (config/production.py); off here so a first run and the tests can make staff.
STAFF_MFA_REQUIRED = False
# A deleted account is deactivated at once and erased after this many days; the emailed link
# undoes the deletion until then (selfservice/deletion.py).
ACCOUNT_DELETE_GRACE_DAYS = env_int("ACCOUNT_DELETE_GRACE_DAYS", 7)
if not 1 <= ACCOUNT_DELETE_GRACE_DAYS <= 365:
    raise ConfigError(
        f"ACCOUNT_DELETE_GRACE_DAYS must be a whole number of days from 1 to 365, "
        f"not {ACCOUNT_DELETE_GRACE_DAYS}"
    )

# --- the client address -----------------------------------------------------------------------
# How many reverse proxies in front of gunicorn append to X-Forwarded-For: the client is the
# entry that many from the end; earlier entries are the client's own words. The one source of
# "the client address" for allauth's rate limits, the sign-up IP and DRF's throttles. 0: use
# REMOTE_ADDR (gunicorn faced directly, `make run`); production defaults to 1, the console's
# nginx (deploy/nginx/console.conf.template), which appends the address it saw.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0 if DEBUG else 1)
if not 0 <= TRUSTED_PROXY_COUNT <= 5:
    raise ConfigError(
        f"TRUSTED_PROXY_COUNT must be between 0 and 5 (proxies in front of gunicorn), "
        f"not {TRUSTED_PROXY_COUNT}"
    )
ALLAUTH_TRUSTED_PROXY_COUNT = TRUSTED_PROXY_COUNT

# --- email ----------------------------------------------------------------------------------
# In development every email (verification, invites, quota notices), whichever process sends
# it (gunicorn or a Celery worker), lands in one mailbox: a file per message in EMAIL_FILE_PATH.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.filebased.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_FILE_PATH = Path(env_str("EMAIL_FILE_PATH", str(VAR_DIR / "mail")))
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Mirror Accelerator <noreply@localhost>")

# --- i18n -----------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# A visitor's choice (the selector) is kept for a year; a logged-in user's is on the account.
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
# Chinese numbers grouped by thousands, as Chinese consoles write them (config/formats/).
FORMAT_MODULE_PATH = ["config.formats"]
# Numbers are localised where people read them (si_bytes, intcomma). USE_THOUSAND_SEPARATOR
# stays off: it would also group machine-read values in templates (data-bytes, ids, pages).
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- static files ---------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(VAR_DIR / "celery" / "queue"),
        "data_folder_out": str(VAR_DIR / "celery" / "queue"),
        "processed_folder": str(VAR_DIR / "celery" / "processed"),
        # Broadcast (control) messages; kombu's default is ./control in the working directory.
        "control_folder": str(VAR_DIR / "celery" / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem://")
    else {}
)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# CELERY_BEAT_SCHEDULE is built once, at the end, from the periods below (config/beat.py).

# --- the mirror: URL shown to users ---------------------------------------------------------
MIRROR_DOMAIN = env_str("MIRROR_DOMAIN", "m.localhost").lower().strip(".")
MIRROR_SCHEME = env_str("MIRROR_SCHEME", "http")
MIRROR_PORT = env_int("MIRROR_PORT", 8480)
if MIRROR_SCHEME not in {"http", "https"}:
    raise ConfigError(f"MIRROR_SCHEME must be http or https, not {MIRROR_SCHEME!r}")
# Rotations a user may make in any 24 hours (staff rotations are not counted against it).
ROTATE_PER_DAY = env_int("ROTATE_PER_DAY", 5)

# --- quota ----------------------------------------------------------------------------------
QUOTA_MONTHLY_BYTES = env_int("QUOTA_MONTHLY_BYTES", 10 * 10**9)
INVITE_BONUS_BYTES = env_int("INVITE_BONUS_BYTES", 2 * 10**9)
WELCOME_BONUS_BYTES = env_int("WELCOME_BONUS_BYTES", 1 * 10**9)
INVITE_CAP = env_int("INVITE_CAP", 50)

# --- ledger and invites ---------------------------------------------------------------------
# Absolute links in emails sent by tasks (no request to build them from).
SITE_URL = env_str("SITE_URL", "http://localhost:8000")
INVITE_EMAILS_PER_DAY = env_int("INVITE_EMAILS_PER_DAY", 20)
# The invite credit needs real use (quota/invites.py): the invitee's accelerator pulled this
# much in total, and the account is this old. A ping is not use.
INVITE_MIN_USAGE_BYTES = env_int("INVITE_MIN_USAGE_BYTES", 100_000_000)
INVITE_MIN_AGE_SECONDS = env_int("INVITE_MIN_AGE_SECONDS", 24 * 3600)
# Held for staff instead of paid: more than this many invitees of one inviter within an hour.
INVITE_HOLD_BURST = env_int("INVITE_HOLD_BURST", 3)
# Throwaway-mail domains earn no credit, beyond the disposable-email-domains package's list.
INVITE_BLOCKED_DOMAINS = env_list("INVITE_BLOCKED_DOMAINS", [])
# The backstop: new month, expired grants, missed batches, invites whose first usage was missed.
LEDGER_RECONCILE_SECONDS = env_int("LEDGER_RECONCILE_SECONDS", 60)

# What this process is: "all" (the control plane, or everything on one machine) or "edge" (an
# edge's worker and render on their own host: no DJANGO_SECRET_KEY or SMTP needed, a
# least-privilege database role, enforcement handed to the control plane's queue).
ACCELERATOR_ROLE = env_str("ACCELERATOR_ROLE", "all")
if ACCELERATOR_ROLE not in {"all", "edge"}:
    raise ConfigError(f"ACCELERATOR_ROLE must be all or edge, not {ACCELERATOR_ROLE!r}")

# --- production ---------------------------------------------------------------------------
if not DEBUG:
    from config.production import check_production_settings

    check_production_settings(globals())

# --- the edge gate ----------------------------------------------------------------------------
# Blob requests of a pull already under way are still served (throttled, as in the low state)
# this long after exhaustion; then they are refused too.
GATE_BLOB_GRACE_SECONDS = env_int("GATE_BLOB_GRACE_SECONDS", 10)
# A tenant is "low" when at most this percent of its month's allowance is left: the edge then
# serves it with the EDGE_LOW_* limits, so the meter catches up before the allowance is gone.
GATE_LOW_REMAINING_PERCENT = env_int("GATE_LOW_REMAINING_PERCENT", 10)
# This edge's name (it tags access-log lines and usage buckets) and its files. The edge issue
# renders nginx and registry configs into EDGE_RUN_DIR; ingestion reads EDGE_ACCESS_LOG.
EDGE_NAME = env_str("EDGE_NAME", "local")
EDGE_RUN_DIR = Path(env_str("EDGE_RUN_DIR", str(VAR_DIR / "edge")))
EDGE_ACCESS_LOG = Path(env_str("EDGE_ACCESS_LOG", str(EDGE_RUN_DIR / "logs" / "access.log")))

# --- api ------------------------------------------------------------------------------------
# Throttles are for fairness between clients, never for quota (the ledger owns quota).
API_THROTTLE_USER = env_str("API_THROTTLE_USER", "1200/min")
API_THROTTLE_ANON = env_str("API_THROTTLE_ANON", "120/min")
API_TOKEN_MAX_DAYS = env_int("API_TOKEN_MAX_DAYS", 365)
API_TOKEN_MAX_LIVE = env_int("API_TOKEN_MAX_LIVE", 50)
API_USAGE_MAX_HOURLY_DAYS = env_int("API_USAGE_MAX_HOURLY_DAYS", 31)
API_USAGE_MAX_DAILY_DAYS = env_int("API_USAGE_MAX_DAILY_DAYS", 366)
DASHBOARD_CACHE_SECONDS = env_int("DASHBOARD_CACHE_SECONDS", 60)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.PersonalTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {"user": API_THROTTLE_USER, "anon": API_THROTTLE_ANON},
    # Never None: DRF would then key the anonymous throttle on the whole client-supplied
    # X-Forwarded-For, which a client changes at will.
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": gettext_lazy("Mirror Accelerator API"),
    "DESCRIPTION": gettext_lazy("Your accelerator, quota, usage and invites; staff operations."),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- edge -----------------------------------------------------------------------------------
# nginx (tenant gate, access log) in front of Distribution in pull-through mode; configs are
# rendered by `manage.py edge_render` into EDGE_RUN_DIR from the templates in deploy/.
UPSTREAM_URL = env_str("UPSTREAM_URL", "https://registry-1.docker.io")
UPSTREAM_USERNAME = env_str("UPSTREAM_USERNAME", "")
UPSTREAM_PASSWORD = env_str("UPSTREAM_PASSWORD", "")
# The other registries, name=url pairs (config/upstreams.py says the rules); each gets its own
# pull-through registry on EDGE_REGISTRY_LISTEN's port + its position (1, 2, ...).
try:
    UPSTREAMS = parse_upstreams(env_str("UPSTREAMS", ""), os.environ)
    UPSTREAM_DENY = parse_deny(
        env_str("UPSTREAM_DENY", ""), {DOCKER_HUB, *(u.name for u in UPSTREAMS)}
    )
except UpstreamError as exc:
    raise ConfigError(str(exc)) from None
# Warn staff when an upstream's pull allowance (its ratelimit-remaining) falls to this share.
UPSTREAM_RATELIMIT_WARN_PERCENT = env_int("UPSTREAM_RATELIMIT_WARN_PERCENT", 20)
# What each edge HEADs to read an upstream's ratelimit headers (<registry>=<repository>:<tag>;
# Docker's documented probe image), and how often (0: never).
try:
    UPSTREAM_RATELIMIT_PROBES = parse_probes(
        env_list("UPSTREAM_RATELIMIT_PROBES", ["docker.io=ratelimitpreview/test:latest"]),
        {DOCKER_HUB, *(u.name for u in UPSTREAMS)},
    )
except UpstreamError as exc:
    raise ConfigError(str(exc)) from None
UPSTREAM_RATELIMIT_PROBE_SECONDS = env_int("UPSTREAM_RATELIMIT_PROBE_SECONDS", 300)
EDGE_LISTEN = env_str("EDGE_LISTEN", f"127.0.0.1:{MIRROR_PORT}")
EDGE_REGISTRY_LISTEN = env_str("EDGE_REGISTRY_LISTEN", "127.0.0.1:5000")
EDGE_REGISTRY_STORAGE_DIR = Path(env_str("EDGE_REGISTRY_STORAGE_DIR", str(VAR_DIR / "registry")))
EDGE_WORKER_PROCESSES = env_str("EDGE_WORKER_PROCESSES", "auto")
# With proxy buffering off nginx relays a stream through one buffer of this size; 64k measured
# 2-3x faster than the one-page default (bench/edge.py prints the figure). Cache hits use sendfile.
EDGE_PROXY_BUFFER_SIZE = env_str("EDGE_PROXY_BUFFER_SIZE", "64k")
EDGE_GATE_SYNC_SECONDS = env_int("EDGE_GATE_SYNC_SECONDS", 2)
# After a reload (at most one per gate sync), old nginx workers close downloads still running
# after this many seconds: reloads cannot pile up workers.
EDGE_WORKER_SHUTDOWN_SECONDS = env_int("EDGE_WORKER_SHUTDOWN_SECONDS", 120)
# The blob cache: one entry per digest, least recently used evicted past EDGE_CACHE_MAX_SIZE.
# Misses are fetched once from UPSTREAM_URL by nginx's loopback fetch server (EDGE_FETCH_LISTEN)
# with bearer tokens from the token helper (EDGE_TOKEN_LISTEN, `manage.py edge_token`).
EDGE_CACHE_DIR = Path(env_str("EDGE_CACHE_DIR", str(VAR_DIR / "edge-cache")))
EDGE_CACHE_MAX_SIZE = env_str("EDGE_CACHE_MAX_SIZE", "10g")
EDGE_CACHE_INACTIVE = env_str("EDGE_CACHE_INACTIVE", "30d")
EDGE_FETCH_LISTEN = env_str("EDGE_FETCH_LISTEN", "127.0.0.1:8481")
EDGE_TOKEN_LISTEN = env_str("EDGE_TOKEN_LISTEN", "127.0.0.1:8482")
# The cache fills in slices (clients joining a fill wait for one slice, not the blob), each fill
# passing through the digest check (`manage.py edge_verify`, EDGE_VERIFY_LISTEN).
EDGE_VERIFY_LISTEN = env_str("EDGE_VERIFY_LISTEN", "127.0.0.1:8484")
EDGE_SLICE_SIZE = env_str("EDGE_SLICE_SIZE", "8m")
# The parent tier: this edge's misses go to a parent edge first (its EDGE_CHILD_LISTEN), and a
# parent serves its children there; both ends carry the same EDGE_PARENT_SECRET.
EDGE_PARENT_URL = env_str("EDGE_PARENT_URL", "")
EDGE_CHILD_LISTEN = env_str("EDGE_CHILD_LISTEN", "")
EDGE_PARENT_SECRET = env_str("EDGE_PARENT_SECRET", "")
# The edge's health listener: /healthz (outside the gate) and nginx's stub_status for the
# nginx exporter. Loopback by default; a load balancer on another host needs a reachable one.
EDGE_HEALTH_LISTEN = env_str("EDGE_HEALTH_LISTEN", "127.0.0.1:8483")
# Per-tenant limits at the edge (a free 429 TOOMANYREQUESTS with Retry-After beyond them):
# requests in progress at once (Docker downloads 3 layers at a time), and nginx rates (r/s or
# r/m) with bursts for blob misses (each one an upstream fetch), HEADs and refused requests.
EDGE_TENANT_CONNECTIONS = env_int("EDGE_TENANT_CONNECTIONS", 16)
EDGE_TENANT_MISS_RATE = env_str("EDGE_TENANT_MISS_RATE", "2r/s")
EDGE_TENANT_MISS_BURST = env_int("EDGE_TENANT_MISS_BURST", 120)
EDGE_TENANT_HEAD_RATE = env_str("EDGE_TENANT_HEAD_RATE", "20r/s")
EDGE_TENANT_HEAD_BURST = env_int("EDGE_TENANT_HEAD_BURST", 200)
EDGE_TENANT_REFUSAL_RATE = env_str("EDGE_TENANT_REFUSAL_RATE", "2r/s")
EDGE_TENANT_REFUSAL_BURST = env_int("EDGE_TENANT_REFUSAL_BURST", 30)
# The bandwidth cap (issue 13: bounded overspend): bytes per second per download, and GET
# requests per second (with a burst) per tenant; accelerator.gate.overspend_bound() turns
# these into the most a tenant can take beyond its allowance.
EDGE_TENANT_RATE = env_int("EDGE_TENANT_RATE", 6_250_000)
EDGE_TENANT_REQUEST_RATE = env_int("EDGE_TENANT_REQUEST_RATE", 10)
EDGE_TENANT_REQUEST_BURST = env_int("EDGE_TENANT_REQUEST_BURST", 50)
# The same limits near the end of the allowance (gate state low) and in the blob grace.
EDGE_LOW_CONNECTIONS = env_int("EDGE_LOW_CONNECTIONS", 4)
EDGE_LOW_RATE = env_int("EDGE_LOW_RATE", 1_000_000)
EDGE_LOW_REQUEST_RATE = env_int("EDGE_LOW_REQUEST_RATE", 2)
EDGE_LOW_REQUEST_BURST = env_int("EDGE_LOW_REQUEST_BURST", 10)
# DNS server nginx uses to follow the upstream's redirects to its blob store (CDN); empty:
# the first nameserver of /etc/resolv.conf.
EDGE_RESOLVER = env_str("EDGE_RESOLVER", "")
EDGE_UPSTREAM_CA_BUNDLE = env_str("EDGE_UPSTREAM_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
# HTTPS for clients (with MIRROR_SCHEME=https): host:port plus a certificate for *.MIRROR_DOMAIN.
EDGE_TLS_LISTEN = env_str("EDGE_TLS_LISTEN", "")
EDGE_TLS_CERT = env_str("EDGE_TLS_CERT", "")
EDGE_TLS_KEY = env_str("EDGE_TLS_KEY", "")
# Started as root, nginx runs its workers as this user; empty: nginx's default (nobody).
EDGE_WORKER_USER = env_str("EDGE_WORKER_USER", "")

# --- ingest ---------------------------------------------------------------------------------
# Usage from the edges' access logs. One beat entry per edge; each run reads from the saved
# position until it catches up or INGEST_RUN_SECONDS pass, committing every batch with its
# position. Several edges later: one entry (and one queue) each, with their own edge and path.
INGEST_INTERVAL_SECONDS = env_int("INGEST_INTERVAL_SECONDS", 2)
INGEST_RUN_SECONDS = env_int("INGEST_RUN_SECONDS", 10)
INGEST_BATCH_LINES = env_int("INGEST_BATCH_LINES", 1_000_000)
# Processes that parse a big catch-up's batches (ingest.parallel); -1: one per core, at most
# two (none on one core); 0: parse in the run's own process.
INGEST_PARSE_WORKERS = env_int("INGEST_PARSE_WORKERS", -1)
# A rotated file is finished once it has stopped growing for this long (nginx reopened).
INGEST_ROTATED_IDLE_SECONDS = env_int("INGEST_ROTATED_IDLE_SECONDS", 60)
INGEST_SAMPLES_KEPT = env_int("INGEST_SAMPLES_KEPT", 20)
INGEST_QUEUE = env_str("INGEST_QUEUE", "")  # empty: Celery's default queue

# --- edges (deployment) ---------------------------------------------------------------------
# The edges this control plane serves (config/edges.py says why a setting, not a model).
# Empty: one edge, EDGE_NAME, whose tasks run on the control plane's worker (one server).
# EDGES=east,west: beat sends each edge's ingestion and gate sync to queue edge.<name>, which
# only the Celery worker on that edge consumes (it reads its own EDGE_ACCESS_LOG and writes
# its own EDGE_RUN_DIR); the dashboard lists every edge named here, reporting or not.
try:
    EDGES = edges_parse(env_str("EDGES", ""))
except EdgesError as exc:
    raise ConfigError(str(exc)) from None
# The console site (deploy/nginx/console.conf.template, `manage.py deploy_render --console`):
# SITE_URL's host over HTTPS in front of gunicorn. On a single server it shares the edge's
# nginx and listeners, and one certificate can hold both names (the console host and
# *.MIRROR_DOMAIN), hence these defaults.
WEB_LISTEN = env_str("WEB_LISTEN", "127.0.0.1:8000")
CONSOLE_HTTP_LISTEN = env_str("CONSOLE_HTTP_LISTEN", EDGE_LISTEN)
CONSOLE_TLS_LISTEN = env_str("CONSOLE_TLS_LISTEN", EDGE_TLS_LISTEN)
CONSOLE_TLS_CERT = env_str("CONSOLE_TLS_CERT", EDGE_TLS_CERT)
CONSOLE_TLS_KEY = env_str("CONSOLE_TLS_KEY", EDGE_TLS_KEY)

# --- operations (README "Operations") ---------------------------------------------------
# /metrics answers only these client addresses (REMOTE_ADDR: gunicorn behind the console
# nginx sees 127.0.0.1, so Prometheus scrapes gunicorn's WEB_LISTEN directly).
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
# The upstream's pull allowance (Docker Hub: 100 or 200 per 6 hours; 0 = none known) and its
# window: exported for the "upstream allowance" alert, which counts blob fills against it.
UPSTREAM_PULL_LIMIT = env_int("UPSTREAM_PULL_LIMIT", 0)
UPSTREAM_PULL_WINDOW_SECONDS = env_int("UPSTREAM_PULL_WINDOW_SECONDS", 6 * 3600)
# text (Django's default) or json: one JSON object a line, with the request id, for the web
# and the Celery workers.
LOG_FORMAT = env_str("LOG_FORMAT", "text")
if LOG_FORMAT not in {"text", "json"}:
    raise ConfigError(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")
if LOG_FORMAT == "json":
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "ops.logs.RequestIdFilter"}},
        "formatters": {"json": {"()": "ops.logs.JsonFormatter"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    }
    # Celery keeps Django's handlers instead of installing its own text ones.
    CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- beat: every periodic task, built once from the values above ----------------------------
CELERY_BEAT_SCHEDULE = beat_schedule(
    edges=EDGES,
    edge_name=EDGE_NAME,
    ingest_seconds=INGEST_INTERVAL_SECONDS,
    ingest_queue=INGEST_QUEUE,
    gate_sync_seconds=EDGE_GATE_SYNC_SECONDS,
    reconcile_seconds=LEDGER_RECONCILE_SECONDS,
    dashboard_cache_seconds=DASHBOARD_CACHE_SECONDS,
    allowance_seconds=UPSTREAM_RATELIMIT_PROBE_SECONDS if UPSTREAM_RATELIMIT_PROBES else 0,
)
