"""Warm runs: Python commands forked from a zygote that imported pytest once, inside bubblewrap.

`sandbox.run(..., warm=True)` comes here for `[env NAME=value ...] python (-m MODULE | -c CODE | SCRIPT) ARGS` (the
tests, the benchmark, the discriminator's probe) when the worker is root
(a fresh uid per run needs it). Everything else takes the ordinary path, one bwrap per command, and so does a
run the machinery fails to start (never because of the patch: a run cannot reach it); a zygote lost during a run
raises WarmRunLost, and the stage is retried on fresh copies. scoring/core/sandbox/zygote.py describes what a warm run
gets, which is what a cold one gets: its own mount, PID, IPC and network namespaces (only `lo`), the same
read-only system, a fresh uid without capabilities, the same rlimits, a cgroup of its own with the same limits
for the run as a whole (scoring.core.sandbox.cgroups), the same wall clock enforced from here, the same output cap.
The zygote is tied to the worker like a cold run's bwrap (bwrap.spawn), and has a cgroup of its own.

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
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scoring.core.sandbox import bwrap, cgroups
from scoring.core.types import RunLimits, RunResult

ZYGOTE_SCRIPT = Path(__file__).with_name("zygote.py")
ZYGOTE_INSIDE = "/sandbox/zygote.py"
RUNS_INSIDE = "/sandbox/runs"
#: What the zygote may do, and only before a run drops it all: namespaces and mounts, `lo` up, uid/gid, the
#: bounding set.
_CAPABILITIES = ("CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")
_START_TIMEOUT_S = 30.0
#: After the run's output closes, how long its status may take before the run counts as stuck and is killed.
_EXIT_GRACE_S = 0.5
_MAX_MESSAGE = 1 << 20
_KEEP = 2
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.DOTALL)
#: Modules a task environment may not ship for a warm run (Python imports them at start-up, before any run).
_START_UP_MODULES = frozenset({"sitecustomize", "usercustomize"})
_log = logging.getLogger(__name__)

_zygotes: OrderedDict[tuple[Path, Path | None], Zygote] = OrderedDict()
_lock = threading.Lock()
#: How this process's eligible Python runs went: "warm" (ran in a zygote, timeouts included), "cold" (sent to
#: the ordinary path: no zygote, a shadowing task environment, a run that could not start), "lost".
stats: Counter[str] = Counter()


class WarmRunLost(RuntimeError):
    """The zygote went away while a run was in it: the run may have changed its tree, so it is not re-run here.

    The stage fails and is retried from fresh copies (scoring.tasks); this never happens because of the patch.
    """


def python_args(argv: Sequence[str]) -> tuple[dict[str, str], dict[str, Any]] | None:
    """(extra environment, program) when `argv` is `[env NAME=value ...] python PROGRAM ARGS`.

    PROGRAM is `-m MODULE`, `-c CODE` or a script's path, after an optional `-P`; the program is {"module" | "code" |
    "path": ..., "args": ARGS}, with "safe_path": True after `-P`. None for anything else (another interpreter
    option, another executable), and for a PYTHON* variable: Python reads those when it starts, which a forked run
    cannot replay.
    """
    argv = list(argv)
    env: dict[str, str] = {}
    if argv[:1] == ["env"]:
        argv = argv[1:]
        while argv and _ASSIGNMENT.fullmatch(argv[0]):
            name, value = argv.pop(0).split("=", 1)
            env[name] = value
    if argv[:1] != ["python"] or len(argv) < 2 or any(name.startswith("PYTHON") for name in env):
        return None
    safe = {"safe_path": True} if argv[1] == "-P" else {}
    if safe:
        argv = [argv[0], *argv[2:]]
    if len(argv) < 2:
        return None
    if argv[1] in ("-m", "-c"):
        if len(argv) < 3:
            return None
        return env, {"module" if argv[1] == "-m" else "code": argv[2], "args": argv[3:], **safe}
    if argv[1].startswith("-"):
        return None
    return env, {"path": argv[1], "args": argv[2:], **safe}


def run(
    argv: Sequence[str], *, tree: Path, report_dir: Path | None, env_dir: Path | None, limits: RunLimits, uid: int
) -> RunResult | None:
    """Run the Python command `argv` (placeholders already replaced) warm; None when it must run cold instead.

    `tree` and `report_dir` are already handed over to `uid`. Both must lie in the same runs folder (the tree's
    grandparent, as scratch_copy makes them), which the zygote sees whole and each run sees only its part of.
    Raises WarmRunLost when the zygote died during the run.
    """
    parsed = python_args(argv)
    runs_root = tree.parent.parent
    if parsed is None or runs_root == Path("/") or (report_dir and not report_dir.is_relative_to(runs_root)):
        return None
    env, program = parsed
    request = {
        "tree": tree.relative_to(runs_root).as_posix(),
        "report": report_dir.relative_to(runs_root).as_posix() if report_dir else None,
        "program": program,
        "env": env,
        "uid": uid,
        "limits": {
            "cpu": max(1, int(limits.cpu_s + 0.999)),
            "memory": limits.memory_bytes,
            "file_size": limits.file_size_bytes,
            "pids": limits.max_pids,
            "cpus": list(limits.cpus),
        },
    }
    with _lock:
        zygote = _zygote(runs_root, env_dir)
        if zygote is None or zygote.shadowed:
            stats["cold"] += 1
            return None
        outcome = "lost"
        try:
            result = zygote.run(request, limits)
            outcome = "cold" if result is None else "warm"
            return result
        finally:
            stats[outcome] += 1
            if zygote.dead:
                _forget(zygote)


def prestart(runs_root: Path, env_dir: Path | None = None) -> bool:
    """Start the zygote for (runs folder, task environment) ahead of its first run; True when one is up.

    A worker pays for a zygote once, not per task or patch (as for the warm analyser); this moves that cost
    out of the first patch's time. False when warm runs are impossible here (no bubblewrap, not root).
    """
    if os.geteuid() != 0 or bwrap.sandbox_mode(allow_unsandboxed=True) != "bwrap":
        return False
    with _lock:
        return _zygote(runs_root.resolve(), env_dir.resolve() if env_dir else None) is not None


class Zygote:
    """One warm Python process (pytest imported) in its own bubblewrap, and the socket to it.

    Used under the module's lock.
    """

    def __init__(self, runs_root: Path, env_dir: Path | None) -> None:
        self.dead = False
        #: The cgroup of the next run, which its supervisor (standing by in the zygote) has joined or is joining.
        self.prepared: cgroups.RunGroup | None = None
        self.owner = os.getpid()
        self.requests = 0
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - the zygote's stderr for its whole life
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        side_read, side_write = os.pipe()
        mounts = [
            "--ro-bind", str(ZYGOTE_SCRIPT), ZYGOTE_INSIDE,
            "--bind", str(runs_root), RUNS_INSIDE,
            "--dir", bwrap.TREE_INSIDE,
            "--dir", bwrap.REPORT_INSIDE,
        ]  # fmt: skip
        # The task environment is mounted but not on the zygote's path: its code must not run with privileges.
        args = bwrap.bwrap_args(mounts, env_dir, env_on_path=False)
        capabilities = [arg for name in _CAPABILITIES for arg in ("--cap-add", name)]
        command = [
            "/usr/bin/env", "-i", args[0], "--info-fd", str(side_write), *capabilities, *args[1:],
            sys.executable, ZYGOTE_INSIDE, str(theirs.fileno()),
            json.dumps([str(path) for path in bwrap.python_prefixes()]),
        ]  # fmt: skip
        # Tied to this process (bwrap.spawn): the zygote, and every run in it, dies with the worker. In a cgroup
        # of its own (no limits: it is not a run) that the worker's watcher empties if the worker is killed while
        # bwrap is still setting the zygote's sandbox up (cgroups.watch).
        self.group = cgroups.create(memory_bytes=None, max_pids=None)
        join = self.group.open_procs() if self.group else []
        try:
            self.process = bwrap.spawn(
                command,
                join=join,
                lasting=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self.log,
                start_new_session=True,
                pass_fds=(theirs.fileno(), side_write),
                env={},
            )
        except BaseException:
            if self.group is not None:
                self.group.finish()
            raise
        finally:
            cgroups.close(join)
            theirs.close()
            os.close(side_write)
        self.channel = ours
        self.side_read = side_read
        self.channel.settimeout(_START_TIMEOUT_S)
        try:
            ready = json.loads(self.channel.recv(_MAX_MESSAGE) or b"{}")
        except (OSError, ValueError):
            ready = {}
        # A pidfd names the namespace's PID 1 for good: a kill can never reach a process that reused its number.
        child_pid = bwrap.namespace_init_pid(bwrap.drain(side_read))
        self.child: int | None = None
        if child_pid is not None:  # None: bwrap never said (it failed)
            with contextlib.suppress(OSError):
                self.child = os.pidfd_open(child_pid)
        # In a cold run an environment's module would win over the zygote's (PYTHONPATH comes first): such a task,
        # or one whose environment ships a start-up hook, runs cold. The environment never changes: asked once.
        modules = frozenset(ready.get("modules", ())) | _START_UP_MODULES
        shipped = {entry.name.split(".")[0] for entry in os.scandir(env_dir)} if env_dir else set()
        self.shadowed = bool(shipped & modules)
        if not ready.get("ready") or self.child is None:
            self.close()
            self.log.seek(0)
            _log.warning("warm runs unavailable, running Python commands cold: %s", self.log.read()[-2000:].decode())
            return
        self.prepared = _new_group(RunLimits())
        if self.prepared is not None:
            join = self.prepared.open_procs()
            try:
                socket.send_fds(self.channel, [b'{"prepare": true}'], join)
            except OSError:
                self.close()
            finally:
                cgroups.close(join)

    def run(self, request: dict[str, Any], limits: RunLimits) -> RunResult | None:
        """Send one request and supervise it like a cold run.

        None when the zygote failed before the run's code started (the caller runs it cold); WarmRunLost when
        it went away during the run. Any exception here (a soft time limit, say) kills the zygote first, so no
        run is ever left behind without its wall clock.
        """
        try:
            return self._run(request, limits)
        except BaseException:
            self.close()
            raise

    def _run(self, request: dict[str, Any], limits: RunLimits) -> RunResult | None:
        started = time.monotonic()
        # The run's cgroup was made ahead (its supervisor joined it during the previous run); its limits are set
        # now, before the run starts. The next run's cgroup goes with this request.
        group, self.prepared = self.prepared, None
        try:
            if group is not None:
                group.set_limits(memory_bytes=limits.run_memory_bytes, max_pids=limits.run_max_pids)
            self.prepared = _new_group(limits)
            request = {**request, "in_cgroup": group is not None}
            ran = self._exchange(request, limits, started, self.prepared.open_procs() if self.prepared else [])
        finally:
            usage = group.finish() if group else None  # kills what is left of the run even if the worker failed
        if ran is None:
            return None
        collected, code, cpu_s = ran
        if usage is not None and usage.cpu_s is not None:
            cpu_s = usage.cpu_s
        limit_hit = usage.limit_hit if usage else None
        return bwrap.run_result(
            collected, code=code, cpu_s=cpu_s, started=started, limits=limits, limit_hit=limit_hit, warm=True
        )

    def _exchange(
        self, request: dict[str, Any], limits: RunLimits, started: float, join: list[int]
    ) -> tuple[bwrap.Collected, int, float] | None:
        """Send the request (with the run's output pipe and the next run's cgroup), collect its output and reply.

        (output, exit code as a shell reports it, CPU seconds by the zygote's count), or None when the run did
        not start. Closes the descriptors of `join`.
        """
        self.requests += 1
        request = {**request, "id": self.requests}
        output_read, output_write = os.pipe()
        try:
            socket.send_fds(self.channel, [json.dumps(request).encode()], [output_write, *join])
        except OSError:
            os.close(output_read)
            self.close()
            return None  # not delivered: nothing ran
        finally:
            os.close(output_write)
            cgroups.close(join)
        reply: dict[str, Any] = {}
        self.channel.setblocking(False)

        def exited() -> bool:
            nonlocal reply
            if not reply:
                reply = self._reply(blocking=False)
            return bool(reply)

        try:
            deadline = started + limits.wall_s
            collected = bwrap.collect_output(output_read, deadline=deadline, limits=limits, exited=exited)
        finally:
            os.close(output_read)
        if collected.timed_out:
            self.close()  # kills the run with everything else in this sandbox
            return collected, 0, 0.0
        if not reply:
            # The output closed but the run has not ended: as on a cold run, it is killed there and then.
            self.channel.settimeout(max(0.01, min(deadline - time.monotonic(), _EXIT_GRACE_S)))
            reply = self._reply(blocking=True)
            if not reply:
                self.close()
                return collected, 128 + signal.SIGKILL, 0.0
        if reply.get("id") != request["id"] or "code" not in reply:
            self.close()
            if reply.get("ran") is False:
                _log.warning("warm test run could not start, running it cold: %s", reply.get("error"))
                return None
            raise WarmRunLost(f"the warm test runner failed during a run: {reply.get('error', 'unexpected reply')}")
        return collected, reply["code"], reply["cpu_s"]

    def _reply(self, *, blocking: bool) -> dict[str, Any]:
        """The zygote's reply; {} when none is there yet (or none came within the channel's timeout)."""
        try:
            data = self.channel.recv(_MAX_MESSAGE)
        except (BlockingIOError, TimeoutError):
            return {}
        except OSError:
            return {"error": "the zygote is gone"}
        if not data:
            return {"error": "the zygote is gone"}
        try:
            reply: dict[str, Any] = json.loads(data)
        except ValueError:
            return {"error": "an unreadable reply"}
        return reply

    def close(self) -> None:
        """Kill the zygote's whole sandbox (any run in it included) and wait for it. Only its owner process may."""
        if self.dead or self.owner != os.getpid():
            return
        self.dead = True
        prepared, self.prepared = self.prepared, None
        with contextlib.suppress(OSError):
            self.channel.close()
        if self.process.poll() is None:  # not reaped yet, so its pid (and process group) is still its own
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if self.child is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.child, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        if self.child is not None:
            with contextlib.suppress(OSError):
                select.select([self.child], [], [], 3.0)  # readable once the namespace's PID 1 has exited
                os.close(self.child)
        with contextlib.suppress(OSError):
            os.close(self.side_read)
        self.log.close()
        for group in (prepared, self.group):
            if group is not None:
                group.finish()


def _zygote(runs_root: Path, env_dir: Path | None) -> Zygote | None:
    """This process's live zygote for (runs folder, environment), started if needed; None if none can start."""
    key = (runs_root, env_dir)
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


def _new_group(limits: RunLimits) -> cgroups.RunGroup | None:
    return cgroups.create(memory_bytes=limits.run_memory_bytes, max_pids=limits.run_max_pids)


def _forget(zygote: Zygote) -> None:
    for key, value in list(_zygotes.items()):
        if value is zygote:
            del _zygotes[key]
    zygote.close()


def _drop_inherited() -> None:
    """In a forked child: the parent's zygotes are the parent's; close this copy of their sockets, keep them alive."""
    for zygote in _zygotes.values():
        zygote.dead = True
        with contextlib.suppress(OSError):
            zygote.channel.close()
    _zygotes.clear()


os.register_at_fork(after_in_child=_drop_inherited)


@atexit.register
def close_all() -> None:
    """Stop this process's zygotes."""
    with _lock:
        for zygote in list(_zygotes.values()):
            zygote.close()
        _zygotes.clear()
