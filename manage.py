#!/usr/bin/env python
"""Django's command-line utility for reviewapp."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        # Loaded here, before any command: Django's own loader would set a bad setting aside and run on without it.
        settings.INSTALLED_APPS  # noqa: B018
    except ImproperlyConfigured as exc:
        # A bad environment variable (reviewapp/settings/environment.py): its message, not a traceback.
        print(f"reviewapp: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
