"""The one settings module, driven by environment variables (see .env.example).

Everything has an embedded default that runs on one machine: a SQLite file in the project
folder, the django-q2 ORM broker, the database cache, and locally generated secrets kept in
``.local/`` (never committed). Production sets the variables instead.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from datetime import timedelta
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
LOCAL_DIR = BASE_DIR / ".local"

env = environ.Env()
# A .env file next to manage.py is read if present; real environment variables win.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _local_secret(name: str, make) -> str:
    """A secret generated once for the embedded default and kept in .local/ (not committed)."""
    path = LOCAL_DIR / name
    if path.exists():
        return path.read_text().strip()
    LOCAL_DIR.mkdir(exist_ok=True)
    value = make()
    path.write_text(value)
    path.chmod(0o600)
    return value


def _env_bool(name: str, default: bool) -> bool:
    raw = env.str(name, default=None)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false)")


DEBUG = _env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or _local_secret(
    "secret_key", lambda: secrets.token_urlsafe(50)
)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Keys that encrypt secrets at rest (service account passwords, client secrets). The first key
# encrypts; every key decrypts, so keys can be rotated by prepending a new one.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[]) or [
    _local_secret("field_encryption_key", lambda: Fernet.generate_key().decode())
]
for _key in FIELD_ENCRYPTION_KEYS:
    try:
        Fernet(_key)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS must be comma-separated Fernet keys "
            '(make one with: python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())")'
        ) from exc

# Base URL at which Exchange Online can reach this server's webhooks (/hooks/graph/): https in
# production; http only for loopback addresses (tests, the local simulator).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")

# How long a worker's hold on a mailbox lives without renewal: how soon the mailbox of a worker
# that died is taken over by another (a running pass renews it long before).
SYNC_LEASE_SECONDS = env.float("SYNC_LEASE_SECONDS", default=300.0)
# Run rows, task results, audit entries and unlinked tombstones older than this are pruned daily.
SYNC_RETENTION_DAYS = env.float("SYNC_RETENTION_DAYS", default=30.0)
# Passes a worker process runs at once (threads): a pass mostly waits on Exchange, so threads
# overlap its waits with other passes' work. 1 runs them one after the other.
PASS_THREADS = env.int("PASS_THREADS", default=8)
# Passes at once per EWS service account across every worker (Exchange's EWSMaxConcurrency is
# 27 connections per account; raise only with the server's throttling policy).
SYNC_EWS_CONCURRENT_PASSES = env.int("SYNC_EWS_CONCURRENT_PASSES", default=27)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_q",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "synccore",
    "syncadmin",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "syncadmin.middleware.ContentSecurityPolicyMiddleware",
    # NUL characters and over-size bodies: 400 before any view or session work.
    "syncadmin.edge.MalformedRequestMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "syncadmin.middleware.IdleTimeoutMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "syncadmin.urls"
WSGI_APPLICATION = "syncadmin.wsgi.application"
ASGI_APPLICATION = "syncadmin.asgi.application"

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, a qcluster and the push listener write at once: WAL lets readers run
    # beside the writer, IMMEDIATE transactions take the write lock up front (no upgrade
    # deadlocks), and the timeout waits for the lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    )
    # The test database lives in a file, not in memory: runtime tests start a real qcluster
    # process, which must open the same database. One file per test process.
    DATABASES["default"].setdefault("TEST", {}).setdefault(
        "NAME", str(Path(tempfile.gettempdir()) / f"crm-sync-test-{os.getpid()}.sqlite3")
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (shared by every process: django-q2 keeps cluster statistics here) ----------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "synccore_cache"}
    }

# --- Auth ------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
# SESSION_COOKIE_AGE bounds a session in all; SESSION_IDLE_MINUTES of inactivity also end it
# (the console's own status refreshes do not count as activity).
SESSION_IDLE_SECONDS = env.int("SESSION_IDLE_MINUTES", default=60) * 60
LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "console:overview"
LOGOUT_REDIRECT_URL = "console:login"
AUTHENTICATION_BACKENDS = [
    # Refuses logins for locked-out users/addresses (django-axes), then the ordinary check.
    "syncadmin.auth_backends.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Lockout after repeated failures: per user name and address, lifted after the cool-off.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("LOGIN_LOCKOUT_HOURS", default=1.0)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "console/locked_out.html"
AXES_VERBOSE = False

# --- REST API ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",  # outside clients: Authorization: Token <token>
        "rest_framework.authentication.SessionAuthentication",  # the console's own calls (CSRF)
    ],
    "DEFAULT_PERMISSION_CLASSES": ["syncadmin.api.permissions.HasRole"],
    "DEFAULT_SCHEMA_CLASS": "syncadmin.api.schema.SyncAutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Bounded bodies, no lone surrogates / NUL / deep nesting: a 400 naming where, never a 500.
    "DEFAULT_PARSER_CLASSES": ["syncadmin.api.parsers.StrictJSONParser"],
    "EXCEPTION_HANDLER": "syncadmin.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
API_TOKEN_TTL_DAYS = env.int("API_TOKEN_TTL_DAYS", default=90)
REST_KNOX = {
    # Per-client tokens expire (days; 0 = never) and can be revoked (delete them in the admin).
    "TOKEN_TTL": timedelta(days=API_TOKEN_TTL_DAYS) if API_TOKEN_TTL_DAYS else None,
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CRM ⇄ Exchange Synchronizer API",
    "DESCRIPTION": (
        "Operate the synchronizer (start, stop, sync now, status), configure environments, and feed "
        "CRM data in and read Exchange's changes back. Authenticate with `Authorization: Token <token>` "
        "(`python manage.py create_api_token USERNAME`). Roles: viewer (read), operator (also start, "
        "stop, sync now), administrator (everything)."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # The docs page works offline: its assets come from drf-spectacular-sidecar, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "SyncKindEnum": "synccore.models.state.SyncKind",
        "EntityEnum": "synccore.mapping.ENTITY_CHOICES",
        "SyncDirectionEnum": "synccore.models.config.SyncDirection",
    },
}

# --- Internationalisation --------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files (served by whitenoise, also with DEBUG off) -------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Production hardening (on when DJANGO_SECURE is true) -----------------------------------
if _env_bool("DJANGO_SECURE", False):
    SECURE_SSL_REDIRECT = _env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True

# --- django-q2 -------------------------------------------------------------------------------
Q_BROKER = env.str("Q_BROKER", default="orm")
if Q_BROKER not in {"orm", "redis"}:
    raise ImproperlyConfigured(f"Q_BROKER={Q_BROKER!r}: use 'orm' or 'redis'")
Q_TIMEOUT = env.int("Q_TIMEOUT", default=600)
Q_CLUSTER = {
    "name": env.str("Q_CLUSTER_NAME", default="synchronizer"),
    "workers": env.int("Q_WORKERS", default=2),
    # retry must exceed timeout, or a long pass is handed to a second worker while it runs.
    "timeout": Q_TIMEOUT,
    "retry": Q_TIMEOUT + 120,
    "max_attempts": env.int("Q_MAX_ATTEMPTS", default=3),
    # A synchronizer that was down must not replay every missed tick when it comes back.
    "catch_up": False,
    "save_limit": env.int("Q_SAVE_LIMIT", default=1000),
    "ack_failures": True,
    "label": "Task queue",
}
if Q_BROKER == "redis":
    if not REDIS_URL:
        raise ImproperlyConfigured("Q_BROKER=redis needs REDIS_URL")
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- Logging ---------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # exchangelib logs request bodies (with credentials in headers) at DEBUG.
        "exchangelib": {"level": "WARNING"},
        # httpx / msal (the Graph backend) log every request line, mailbox addresses included.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "msal": {"level": "WARNING"},
        # django-q2 logs through "django-q": an INFO line per task and per scheduler tick.
        "django-q": {"level": env.str("Q_LOG_LEVEL", default="WARNING")},
        "django_q": {"level": env.str("Q_LOG_LEVEL", default="WARNING")},
    },
}

# A bearer token a monitoring system may read GET /metrics with (empty: API tokens only).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# Outgoing e-mail for alerts (O6), Django's own settings. Without EMAIL_HOST the messages are
# written to the workers' log (the console backend) rather than lost silently.
EMAIL_HOST = env.str("EMAIL_HOST", default="")
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env.int("EMAIL_PORT", default=587)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_SSL = _env_bool("EMAIL_USE_SSL", False)
EMAIL_USE_TLS = _env_bool("EMAIL_USE_TLS", not EMAIL_USE_SSL)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="crm-sync@localhost")

# The demo administrator's password (empty: generated once and kept in .local/).
DEMO_ADMIN_PASSWORD = env.str("DEMO_ADMIN_PASSWORD", default="")

# Test hooks: the local EWS simulator's default endpoint (used by seed_demo when none is given).
EXCHANGE_SIM_DEFAULT_URL = env.str("EXCHANGE_SIM_URL", default="http://127.0.0.1:8765/EWS/Exchange.asmx")
