"""The errors a service raises: each carries a message a user can act on (the API answers it with a 4xx)."""

from __future__ import annotations

import logging
from typing import Any

from scoring.models import PatchStatus

log = logging.getLogger(__name__)

S = PatchStatus


class ServiceError(Exception):
    """A request the service refuses, with the HTTP status that says why."""

    status = 400

    def __init__(self, message: str, *, status: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        self.extra = extra


class Conflict(ServiceError):
    status = 409


class QueueFull(ServiceError):
    status = 429
