"""Loaded first (`-p tests.env` in pyproject): points the whole test run at its own data folder.

Tests never touch the data of `make run`. Redis: REDIS_URL when set (CI), otherwise the embedded server that
the `redis_server` fixture starts on a socket inside the test data folder.
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("REVIEWAPP_DATA_DIR", str(ROOT / "build" / "test-data"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")
os.environ.setdefault("REVIEWAPP_ENV", "test")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Small, fast settings for the pipeline in tests (the defaults are sized for production).
os.environ.setdefault("REVIEWAPP_STUCK_AFTER_S", "2")
os.environ.setdefault("REVIEWAPP_BENCH_BUDGET_S", "20")
