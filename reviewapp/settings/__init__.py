"""reviewapp.settings: the settings package (base.py holds them all for now)."""

from .base import *  # noqa: F403
