"""Test settings (REVIEWAPP_ENV=test, set by tests/env.py): development's, with one test database per session."""

from __future__ import annotations

import os

from reviewapp.settings.local import *  # noqa: F403
from reviewapp.settings.local import DATA_DIR, DATABASES

if DATABASES["default"]["ENGINE"].endswith("sqlite3") and DATABASES["default"]["NAME"] == DATA_DIR / "db.sqlite3":
    # A file (not :memory:) so worker subprocesses in tests see the same rows; one per test session.
    DATABASES["default"]["TEST"] = {"NAME": DATA_DIR / f"test-db-{os.getpid()}.sqlite3"}
