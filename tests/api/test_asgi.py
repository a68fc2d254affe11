"""The ASGI web server: static files served, and no middleware that would pin a waiting call to a thread."""

from __future__ import annotations

import httpx
import pytest
from django.conf import settings
from django.utils.module_loading import import_string

from tests.conftest import ROOT


def test_every_middleware_runs_on_the_event_loop() -> None:
    # One synchronous-only middleware makes Django run the rest of the chain, the waiting view included, in a
    # thread that blocks until the answer: every waiting /rewards/ call would hold a thread again.
    sync_only = [path for path in settings.MIDDLEWARE if not getattr(import_string(path), "async_capable", False)]

    assert sync_only == []


@pytest.mark.slow
def test_the_web_server_serves_static_files_whole(web_server) -> None:
    server = web_server()
    path = "css/" + next(p.name for p in sorted((ROOT / "static" / "css").iterdir()))

    response = httpx.get(f"{server.url}/static/{path}", timeout=30)

    assert response.status_code == 200
    assert response.content == (ROOT / "static" / path).read_bytes()
