"""reviewapp's settings: REVIEWAPP_ENV picks local.py (development, the default), production.py or test.py.

DJANGO_SETTINGS_MODULE stays `reviewapp.settings` for every process (web, worker, manage.py, tests).
"""

import os

from django.core.exceptions import ImproperlyConfigured

_ENVIRONMENT = os.environ.get("REVIEWAPP_ENV") or "development"
if _ENVIRONMENT == "production":
    from reviewapp.settings.production import *  # noqa: F403
elif _ENVIRONMENT == "test":
    from reviewapp.settings.test import *  # noqa: F403
elif _ENVIRONMENT == "development":
    from reviewapp.settings.local import *  # noqa: F403
else:
    raise ImproperlyConfigured(f"REVIEWAPP_ENV={_ENVIRONMENT!r} is not valid: use development, production or test")
