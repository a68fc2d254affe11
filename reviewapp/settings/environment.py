"""The one reader of the environment: django-environ, strict about what it accepts.

https://django-environ.readthedocs.io/en/latest/types.html

django-environ alone would read `REVIEWAPP_MAX_DIFF_BYTES=abc` as a bare `ValueError` without the variable's name,
`DEBUG=maybe` as off and `REVIEWAPP_HEAL_CONFIDENCE=1e-3` as 13.0 (it strips what is not a digit). A bad value
here stops the start with `ImproperlyConfigured` naming the variable and the value; manage.py prints it and exits 2.
"""

from __future__ import annotations

from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

_FALSE_STRINGS = ("false", "off", "no", "n", "0")


class Env(environ.Env):
    """environ.Env where an empty variable counts as unset and a value that does not parse is an error."""

    def get_value(self, var: str, cast: Any = None, default: Any = environ.Env.NOTSET, parse_default: bool = False):
        raw = self.ENVIRON.get(f"{self.prefix}{var}")
        # `DEBUG= make run`, or a deployment template that leaves a line blank, means "the default".
        if raw == "" and default is not self.NOTSET:
            return self.parse_value(default, cast) if parse_default else default
        try:
            # A value is taken literally: django-environ would read `SECRET_KEY=$x...` as "the variable x...".
            if raw is not None and raw.startswith("$"):
                return self.parse_value(raw, cast)
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(f"{var}={raw!r} is not valid: {exc}") from exc

    @classmethod
    def parse_value(cls, value: Any, cast: Any) -> Any:
        if cast is bool and isinstance(value, str):
            word = value.strip().lower()
            if word in cls.BOOLEAN_TRUE_STRINGS:
                return True
            if word in _FALSE_STRINGS:
                return False
            raise ValueError("not a yes/no value (use one of 1, true, yes, on / 0, false, no, off)")
        if cast is float and isinstance(value, str):
            return float(value)
        return super().parse_value(value, cast)
