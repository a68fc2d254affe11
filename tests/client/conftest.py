"""Fixtures for the client tests: a real reward service over HTTP, and a loopback proxy that fails on cue."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from scoring.client import RewardClient


@pytest.fixture
def reward_client(live_server, client_token, tiny_task) -> Iterator[RewardClient]:
    """A client of the live server (Django in a thread, the test database), with the `tiny` task registered."""
    with RewardClient(live_server.url, client_token, retries=0) as client:
        yield client


@pytest.fixture
def second_task(tiny_task):
    """The tiny task again under the name `tiny2`, so a batch can mix two tasks."""
    from scoring.core.intake.spec import parse_spec
    from scoring.services import task_create_from_dirs
    from tests.helpers import TINY

    spec = parse_spec((TINY / "spec.json").read_text(), spec_dir=TINY)
    return task_create_from_dirs(spec=dataclasses.replace(spec, name="tiny2"), shared=True)


class FlakyProxy:
    """An HTTP server on 127.0.0.1 in front of `upstream` that plays `script` first, then forwards everything.

    Script steps: "503" (answers 503, Retry-After: 0), "429" (answers 429, Retry-After: 1), "drop" (closes the
    connection without an answer), "lost" (forwards, then answers 503: the server did the work, the client never
    hears of it). `requests` records (method, path, JSON body) of every request that reached the proxy.
    """

    def __init__(self, upstream: str, script: list[str], port: int = 0) -> None:
        self.upstream = upstream
        self.script = list(script)
        self.requests: list[tuple[str, str, object]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_step(self, method: str, path: str, body: bytes) -> str:
        with self._lock:
            self.requests.append((method, path, json.loads(body) if body else None))
            return self.script.pop(0) if self.script else "forward"

    def _forward(self, method: str, path: str, headers, body: bytes) -> httpx.Response:
        keep = {k: v for k, v in headers.items() if k.lower() in ("authorization", "content-type", "accept")}
        return httpx.request(method, self.upstream + path, headers=keep, content=body, timeout=120)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                step = proxy._next_step(self.command, self.path, body)
                if step == "drop":
                    self.close_connection = True
                    return
                if step in ("503", "429"):
                    self._reply(int(step), b'{"detail": "busy"}', {"Retry-After": "0" if step == "503" else "1"})
                    return
                answer = proxy._forward(self.command, self.path, self.headers, body)
                if step == "lost":
                    self._reply(503, b'{"detail": "answer lost"}', {"Retry-After": "0"})
                    return
                self._reply(answer.status_code, answer.content, {})

            def _reply(self, code: int, content: bytes, headers: dict[str, str]) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

        return Handler


@pytest.fixture
def flaky_proxy(live_server):
    """Make FlakyProxy instances in front of the live server; all closed after the test."""
    made: list[FlakyProxy] = []

    def make(script: list[str], port: int = 0) -> FlakyProxy:
        proxy = FlakyProxy(live_server.url, script, port)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
