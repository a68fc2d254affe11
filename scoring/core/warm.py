"""Warm test runs: pytest commands forked from a zygote that imported pytest once, inside bubblewrap.

`sandbox.run(..., warm=True)` comes here for `[env NAME=value ...] python -m pytest ARGS` when the worker is root
(a fresh uid per run needs it). Everything else, and any failure of this machinery (never of the patch), takes
the ordinary path: one bwrap per command. scoring/core/zygote.py describes what a warm run gets, which is what a
cold one gets: its own mount, PID and IPC namespaces, the same read-only system, no network but `lo`, a fresh
uid without capabilities, the same rlimits, the same wall clock enforced from here, the same output cap.

One zygote per worker process and (runs folder, task environment); the two most recent are kept. A run that
outlives its wall clock takes its zygote down with it (SIGKILL to the whole bwrap), and the next run starts a
new one.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from scoring.core import sandbox
from scoring.core.types import RunLimits, RunResult

ZYGOTE_SCRIPT = Path(__file__).with_name("zygote.py")
ZYGOTE_INSIDE = "/sandbox/zygote.py"
RUNS_INSIDE = "/sandbox/runs"
#: What the zygote may do, and only before it forks a run: namespaces and mounts, uid/gid, the bounding set.
_CAPABILITIES = ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")
_START_TIMEOUT_S = 30.0
#: After the run's output closes, how long its status may take before the run counts as stuck and is killed.
_EXIT_GRACE_S = 0.5
_KEEP = 2
_log = logging.getLogger(__name__)
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.DOTALL)

_zygotes: OrderedDict[tuple[int, Path, Path | None], Zygote] = OrderedDict()


def pytest_args(argv: Sequence[str]) -> tuple[dict[str, str], list[str]] | None:
    """(extra environment, pytest's arguments) when `argv` is `[env NAME=value ...] python -m pytest ...`."""
    argv = list(argv)
    env: dict[str, str] = {}
    if argv[:1] == ["env"]:
        argv = argv[1:]
        while argv and _ASSIGNMENT.fullmatch(argv[0]):
            name, value = argv.pop(0).split("=", 1)
            env[name] = value
    if argv[:3] != ["python", "-m", "pytest"]:
        return None
    return env, argv[3:]


def run(
    argv: Sequence[str], *, tree: Path, report_dir: Path | None, env_dir: Path | None, limits: RunLimits, uid: int
) -> RunResult | None:
    """Run the pytest command `argv` (placeholders already replaced) warm; None when it must run cold instead.

    `tree` and `report_dir` are already handed over to `uid`. Both must lie in the same runs folder (the tree's
    grandparent, as scratch_copy makes them), which the zygote sees whole and each run sees only its part of.
    """
    parsed = pytest_args(argv)
    runs_root = tree.parent.parent
    if parsed is None or runs_root == Path("/") or (report_dir and not report_dir.is_relative_to(runs_root)):
        return None
    env, args = parsed
    zygote = _zygote(runs_root, env_dir)
    if zygote is None:
        return None
    request = {
        "tree": tree.relative_to(runs_root).as_posix(),
        "report": report_dir.relative_to(runs_root).as_posix() if report_dir else None,
        "args": args,
        "env": env,
        "uid": uid,
        "limits": {
            "cpu": max(1, int(limits.cpu_s + 0.999)),
            "memory": limits.memory_bytes,
            "file_size": limits.file_size_bytes,
            "pids": limits.max_pids,
        },
    }
    result = zygote.run(request, limits)
    if result is None or zygote.dead:
        _forget(zygote)
    return result


class Zygote:
    """One warm pytest process in its own bubblewrap, and the socket to it."""

    def __init__(self, runs_root: Path, env_dir: Path | None) -> None:
        self.dead = False
        self.owner = os.getpid()
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - the zygote's stderr for its whole life
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        side_read, side_write = os.pipe()
        mounts = [
            "--ro-bind", str(ZYGOTE_SCRIPT), ZYGOTE_INSIDE,
            "--bind", str(runs_root), RUNS_INSIDE,
            "--dir", sandbox.TREE_INSIDE,
            "--dir", sandbox.REPORT_INSIDE,
        ]  # fmt: skip
        args = sandbox.bwrap_args(mounts, env_dir)
        capabilities = [arg for name in _CAPABILITIES for arg in ("--cap-add", name)]
        command = [
            "/usr/bin/env", "-i", args[0], "--info-fd", str(side_write), *capabilities, *args[1:],
            sys.executable, ZYGOTE_INSIDE, str(theirs.fileno()),
        ]  # fmt: skip
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            start_new_session=True,
            pass_fds=(theirs.fileno(), side_write),
            env={},
        )
        theirs.close()
        os.close(side_write)
        self.channel = ours
        self.side_read = side_read
        self.child_pid: int | None = None
        self.channel.settimeout(_START_TIMEOUT_S)
        try:
            ready = json.loads(self.channel.recv(1 << 16) or b"{}")
        except (OSError, ValueError):
            ready = {}
        self.child_pid = sandbox._child_pid(sandbox._drain(side_read))
        if not ready.get("ready"):
            self.close()
            self.log.seek(0)
            _log.warning("warm test runs unavailable, running pytest cold: %s", self.log.read()[-2000:].decode())

    def run(self, request: dict, limits: RunLimits) -> RunResult | None:
        """Send one request and supervise it like a cold run; None if the zygote failed (not the command)."""
        started = time.monotonic()
        output_read, output_write = os.pipe()
        try:
            socket.send_fds(self.channel, [json.dumps(request).encode()], [output_write])
        except OSError:
            os.close(output_read)
            self.close()
            return None
        finally:
            os.close(output_write)
        reply: dict = {}
        self.channel.setblocking(False)

        def exited() -> bool:
            nonlocal reply
            if not reply:
                reply = self._reply_now()
            return bool(reply)

        try:
            deadline = started + limits.wall_s
            collected = sandbox.collect_output(output_read, deadline=deadline, limits=limits, exited=exited)
        finally:
            os.close(output_read)
        if collected.timed_out:
            self.close()  # kills the run with everything else in this sandbox
            return sandbox.run_result(collected, code=0, cpu_s=0.0, started=started, limits=limits)
        if not reply:
            # The output closed but the run has not ended: as on a cold run, it is killed there and then.
            self.channel.settimeout(max(0.01, min(deadline - time.monotonic(), _EXIT_GRACE_S)))
            reply = self._reply_blocking()
            if not reply:
                self.close()
                killed = 128 + signal.SIGKILL
                return sandbox.run_result(collected, code=killed, cpu_s=0.0, started=started, limits=limits)
        if "code" not in reply:
            _log.warning("warm test run failed, running it cold: %s", reply.get("error"))
            self.close()
            return None
        return sandbox.run_result(collected, code=reply["code"], cpu_s=reply["cpu_s"], started=started, limits=limits)

    def _reply_now(self) -> dict:
        try:
            data = self.channel.recv(1 << 16)
        except BlockingIOError:
            return {}
        except OSError:
            return {"error": "the zygote is gone"}
        return json.loads(data) if data else {"error": "the zygote is gone"}

    def _reply_blocking(self) -> dict:
        """The reply, waiting up to the channel's timeout; {} when none came in time."""
        try:
            data = self.channel.recv(1 << 16)
        except TimeoutError:
            return {}
        except OSError:
            return {"error": "the zygote is gone"}
        return json.loads(data) if data else {"error": "the zygote is gone"}

    def close(self) -> None:
        """Kill the zygote's whole sandbox (any run in it included) and wait for it. Only its owner process may."""
        if self.dead or self.owner != os.getpid():
            return
        self.dead = True
        with contextlib.suppress(OSError):
            self.channel.close()
        sandbox._kill_everything(self.process.pid, self.child_pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        sandbox._wait_reaped(self.child_pid)
        with contextlib.suppress(OSError):
            os.close(self.side_read)
        self.log.close()


def _zygote(runs_root: Path, env_dir: Path | None) -> Zygote | None:
    """This process's live zygote for (runs folder, environment), started if needed; None if none can start."""
    key = (os.getpid(), runs_root, env_dir)
    zygote = _zygotes.get(key)
    if zygote is not None and (zygote.dead or zygote.process.poll() is not None):
        _forget(zygote)
        zygote = None
    if zygote is None:
        zygote = Zygote(runs_root, env_dir)
        if zygote.dead:
            return None
        _zygotes[key] = zygote
        while len(_zygotes) > _KEEP:
            _forget(next(iter(_zygotes.values())))
    _zygotes.move_to_end(key)
    return zygote


def _forget(zygote: Zygote) -> None:
    for key, value in list(_zygotes.items()):
        if value is zygote:
            del _zygotes[key]
    zygote.close()


@atexit.register
def close_all() -> None:
    """Stop this process's zygotes (a forked child leaves its parent's alone: see Zygote.close)."""
    for zygote in list(_zygotes.values()):
        zygote.close()
    _zygotes.clear()
