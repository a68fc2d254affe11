"""Installed package versions, as recorded in Results and cache keys."""

from __future__ import annotations

import functools
from importlib import metadata


@functools.cache
def package_version(name: str) -> str:
    """An installed package's version from its metadata, read once per process (so restart the workers after
    upgrading a tool in place: a recycled analyser child would import the new one)."""
    return metadata.version(name)
