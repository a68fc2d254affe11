"""Production settings (REVIEWAPP_ENV=production): a real SECRET_KEY, HTTPS-only cookies, HSTS, the SSL redirect.

https://docs.djangoproject.com/en/5.2/howto/deployment/checklist/ (`manage.py check --deploy` passes with these).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from reviewapp.settings.base import *  # noqa: F403
from reviewapp.settings.base import env

PRODUCTION = True

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when REVIEWAPP_ENV=production")

# Static files are served from STATIC_ROOT (collectstatic), never looked up in the source folders per request.
WHITENOISE_USE_FINDERS = False

SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
