"""Task archives on disk, stored by sha256 below the data folder."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from django.conf import settings


def archives_dir() -> Path:
    path = Path(settings.MEDIA_ROOT) / "archives"
    path.mkdir(parents=True, exist_ok=True)
    return path


def archive_path(sha256: str) -> Path:
    """Where the archive with this sha256 lives. It exists once store_archive returned that sha."""
    return archives_dir() / sha256


def store_archive(stream: BinaryIO, *, max_bytes: int) -> str:
    """Copy an uploaded archive into storage, return its sha256. Raises ValueError past `max_bytes`.

    Written to a temporary file first and renamed, so a half-written archive is never visible.
    """
    digest = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(dir=archives_dir(), prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                size += len(chunk)
                if size > max_bytes:
                    raise ValueError(f"archive is larger than {max_bytes} bytes")
                digest.update(chunk)
                out.write(chunk)
        sha = digest.hexdigest()
        os.replace(tmp, archive_path(sha))
        return sha
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
