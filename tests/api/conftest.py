"""Web servers for the API tests that need a real one: uvicorn on reviewapp.asgi, in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, service_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebServer:
    """One `uvicorn reviewapp.asgi:application` process on the test database and Redis."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(os.environ["REVIEWAPP_DATA_DIR"]) / f"web-{name}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "reviewapp.asgi:application", "--host", "127.0.0.1",
                 "--port", str(self.port), "--lifespan", "off", "--no-access-log"],
                cwd=ROOT, env=service_env(**env), stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the web server did not start; see {self.log}")
            time.sleep(0.2)

    def threads(self) -> int:
        """The number of threads the server process has now."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


@pytest.fixture
def web_server(transactional_db, redis_server) -> Iterator[Callable[..., WebServer]]:
    """Start web servers (`web_server(name, **env)`); all are stopped after the test."""
    servers: list[WebServer] = []

    def start(name: str = "web", **env: str) -> WebServer:
        servers.append(WebServer(name, env))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
