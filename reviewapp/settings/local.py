"""Development settings (REVIEWAPP_ENV=development, the default): `make run` on a laptop."""

from __future__ import annotations

import secrets

from reviewapp.settings.base import *  # noqa: F403
from reviewapp.settings.base import DATA_DIR, env


def _secret_key() -> str:
    """SECRET_KEY when set; otherwise one generated once into DATA_DIR, so sessions survive restarts."""
    key = env.str("SECRET_KEY", default="")
    if key:
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
