"""The cold path of a sandboxed run: bubblewrap's command line, the limits, the supervision of the process.

scoring.core.sandbox.process.run is the entry point (it forks warm runs from the zygote, scoring.core.sandbox.warm,
and runs everything else through here); its docstring says what a sandboxed command sees.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import queue
import random
import re
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from scoring.core.intake.text import storable
from scoring.core.sandbox import cgroups
from scoring.core.types import RunLimits, RunResult

#: Where the command finds its tree, report folder and task environment inside the sandbox.
TREE_INSIDE = "/sandbox/tree"
REPORT_INSIDE = "/sandbox/report"
ENV_INSIDE = "/sandbox/env"

#: Size of each writable tmpfs (/tmp, /dev/shm): it lives in RAM, so it is bounded like memory.
TMPFS_BYTES = 256 << 20
#: Harmless files of /etc that ordinary programs expect (name lookups, time zone, the loader cache).
_ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf")
#: Fresh uids are drawn from here: far above any real account, so no file on the host belongs to them.
UID_BASE, _UID_SPAN = 1_500_000_000, 500_000_000
#: How long to wait for the namespace's processes to be reaped after a kill.
_REAP_WAIT_S = 3.0
_READ_CHUNK = 1 << 16
_PR_SET_PDEATHSIG = 1
#: Exit status of a child whose parent was gone before it could tie itself to it (nothing was started).
_ORPHANED = 125
_libc = ctypes.CDLL(None, use_errno=True)

_SIGNAL_LIMITS: dict[int, str] = {signal.SIGXCPU: "cpu", signal.SIGXFSZ: "file_size"}
# Heuristics on the (untrusted) output text; a patch gains nothing by faking them: the flag only explains a failure.
_TEXT_LIMITS = (
    ("memory", re.compile(r"MemoryError|Cannot allocate memory|std::bad_alloc|out of memory", re.IGNORECASE)),
    ("file_size", re.compile(r"File too large|\[Errno 27\]")),
    (
        "pids",
        re.compile(
            r"BlockingIOError: \[Errno 11\]|fork: (?:retry: )?Resource temporarily unavailable|"
            r"can't start new thread|Resource temporarily unavailable"
        ),
    ),
)


class SandboxUnavailable(RuntimeError):
    """bubblewrap (or a tool it needs) is missing or unusable, and unsandboxed runs are not allowed."""


def sandbox_mode(allow_unsandboxed: bool) -> str:
    """Return "bwrap" when the sandbox works here, else "unsandboxed" if allowed; raise SandboxUnavailable otherwise."""
    problem = _bwrap_problem()
    if problem is None:
        return "bwrap"
    if allow_unsandboxed:
        return "unsandboxed"
    raise SandboxUnavailable(
        f"cannot sandbox untrusted code: {problem}. Install bubblewrap and util-linux "
        "(apt-get install bubblewrap util-linux), or set REVIEWAPP_ALLOW_UNSANDBOXED=1 to run without a sandbox."
    )


@functools.cache
def _bwrap_problem() -> str | None:
    """Why bwrap cannot be used on this machine (None when a trial run succeeds). Probed once per process."""
    for tool in ("bwrap", "prlimit", "env") + (("setpriv",) if os.geteuid() == 0 else ()):
        if shutil.which(tool, path="/usr/bin:/bin") is None:
            return f"{tool} is not installed"
    argv = ["/usr/bin/env", "-i", *mount_args(Path("/"), None, None), "/usr/bin/true"]
    try:
        probe = subprocess.run(argv, capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap failed to start ({exc})"
    if probe.returncode != 0:
        return f"bwrap does not work here: {probe.stderr.decode(errors='replace').strip()[:300]}"
    return None


def limited(argv: list[str], limits: RunLimits, uid: int | None, *, nproc_base: int) -> list[str]:
    """Wrap `argv` in prlimit (and taskset, given CPUs) and, as root, in setpriv to a fresh uid with no capabilities
    and no new privileges."""
    cpu = max(1, int(limits.cpu_s + 0.999))
    wrapped = [
        "/usr/bin/prlimit",
        f"--cpu={cpu}:{cpu + 1}",  # SIGXCPU at the soft limit, SIGKILL one second later
        f"--as={limits.memory_bytes}",
        f"--fsize={limits.file_size_bytes}",
        f"--nproc={nproc_base + limits.max_pids}",
        "--",
    ]
    if limits.cpus:
        wrapped = ["/usr/bin/taskset", "--cpu-list", ",".join(map(str, limits.cpus)), *wrapped]
    if uid is not None:
        wrapped += [
            "/usr/bin/setpriv",
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]
    return wrapped + argv


def mount_args(tree: Path, report_dir: Path | None, env_dir: Path | None) -> list[str]:
    """The bwrap command line up to (not including) the command: namespaces, mounts, environment."""
    mounts = ["--bind", str(tree), TREE_INSIDE]
    if report_dir is not None:
        mounts += ["--bind", str(report_dir), REPORT_INSIDE]
    return bwrap_args(mounts, env_dir)


def bwrap_args(mounts: Sequence[str], env_dir: Path | None, *, env_on_path: bool = True) -> list[str]:
    """bwrap and its options, `mounts` (bwrap mount options for what goes under /sandbox) included.

    `env_dir` is mounted read-only at /sandbox/env, and put on PYTHONPATH unless `env_on_path` is false.
    """
    args = [
        shutil.which("bwrap", path="/usr/bin:/bin") or "bwrap",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        *(() if os.geteuid() == 0 else ("--unshare-user",)),  # unprivileged bwrap needs a user namespace
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "sandbox",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for name in ("bin", "lib", "lib64", "lib32", "sbin"):
        link = Path("/") / name
        if link.is_symlink():
            args += ["--symlink", os.readlink(link), str(link)]
        elif link.is_dir():
            args += ["--ro-bind", str(link), str(link)]
    for path in _ETC_FILES:
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "1777", "--size", str(TMPFS_BYTES), "--tmpfs", "/dev/shm"]  # noqa: S108 - a private tmpfs
    args += ["--perms", "1777", "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp"]  # noqa: S108 - a private tmpfs
    for prefix in python_prefixes():
        args += _open_parents(prefix)
        args += ["--ro-bind", str(prefix), str(prefix)]
    args += ["--perms", "0755", "--dir", "/sandbox", *mounts]
    if env_dir is not None:
        args += ["--ro-bind", str(env_dir), ENV_INSIDE]
    args += ["--remount-ro", "/", "--chdir", TREE_INSIDE, "--clearenv"]
    for assignment in env_assignments(ENV_INSIDE if env_dir and env_on_path else None):
        name, value = assignment.split("=", 1)
        args += ["--setenv", name, value]
    return args


def _open_parents(path: Path) -> list[str]:
    """bwrap creates missing parents of a mount point 0700 (e.g. /root); create them 0755 so the uid can pass."""
    args: list[str] = []
    for parent in reversed(path.parents):
        if str(parent) not in ("/", "/usr") and not str(parent).startswith("/usr/"):
            args += ["--perms", "0755", "--dir", str(parent)]
    return args


@functools.cache
def python_prefixes() -> tuple[Path, ...]:
    """The folders the worker's Python needs (venv and base interpreter), outermost only, outside /usr."""
    candidates = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix) if p}
    candidates.add(Path(os.path.realpath(sys.executable)).parent.parent)
    kept = [p for p in candidates if p != Path("/") and not p.is_relative_to("/usr")]
    return tuple(sorted(p for p in kept if not any(p != q and p.is_relative_to(q) for q in kept)))


def env_assignments(pythonpath: str | None) -> list[str]:
    """The whole environment a sandboxed command gets, as NAME=value strings. No secret can be in it."""
    venv_bin = str(Path(sys.prefix) / "bin")
    env = [
        f"PATH={venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME=/tmp",
        "TMPDIR=/tmp",
        "USER=sandbox",
        "LOGNAME=sandbox",
        "LANG=C.UTF-8",
        "PYTHONDONTWRITEBYTECODE=1",
        "PYTHONNOUSERSITE=1",
        "PYTHONHASHSEED=0",
    ]
    if pythonpath:
        env.append(f"PYTHONPATH={pythonpath}")
    return env


def fresh_uid() -> int:
    """A uid no other run is likely to share: RLIMIT_NPROC counts processes per uid across the whole host."""
    return UID_BASE + random.SystemRandom().randrange(_UID_SPAN)


def hand_over(root: Path, uid: int) -> None:
    """Give `root` and everything under it to `uid` so the sandboxed command can write there (links untouched)."""
    os.lchown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, uid)


def processes_of(uid: int) -> int:
    """How many processes `uid` runs now (RLIMIT_NPROC counts them all, so the limit is set above this)."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += 1
    return count


def supervise(outer: list[str], inner: list[str], *, cwd: str, limits: RunLimits, mode: str) -> RunResult:
    """Start the command in its own process group and cgroup, stream its output under the cap, enforce the wall clock.

    A side pipe carries bwrap's --info-fd JSON (the host pid of the namespace's PID 1, to kill it) and, at the
    end, the output of bash's `times` (the command's CPU time when there is no cgroup to ask: bwrap does not
    pass its children's rusage on). The untrusted command never holds that pipe: bash closes it for the command.
    """
    side_read, side_write = os.pipe()
    times_write = os.dup(side_write)  # bwrap closes its --info-fd after writing; bash needs its own copy
    if mode == "bwrap":
        outer = [*outer[:3], "--info-fd", str(side_write), *outer[3:]]
    # bash first writes a byte to the side pipe, which only this process reads: if it is gone (killed while bwrap
    # was setting the sandbox up, before bwrap's own --die-with-parent was armed), bash dies of SIGPIPE and the
    # command never starts.
    script = (
        f'printf . >&{times_write} || exit 1; "$@" {times_write}>&-; status=$?; times >&{times_write}; exit $status'
    )
    command = [*outer, "/bin/bash", "-c", script, "bash", *inner]  # dash cannot redirect fds above 9
    group = cgroups.create(memory_bytes=limits.run_memory_bytes, max_pids=limits.run_max_pids)
    started = time.monotonic()
    try:
        join = group.open_procs() if group else []
        try:
            proc = spawn(
                command,
                join=join,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(side_write, times_write),
                env={},
            )
        finally:
            cgroups.close(join)
            os.close(side_write)
            os.close(times_write)
    except BaseException:
        os.close(side_read)
        if group:
            group.finish()
        raise
    side = bytearray()
    status: int | None = None

    def exited() -> bool:
        nonlocal status
        if status is None:
            pid, wait_status = os.waitpid(proc.pid, os.WNOHANG)
            if pid:
                status = wait_status
        return status is not None

    assert proc.stdout is not None
    try:
        collected = collect_output(proc.stdout.fileno(), deadline=started + limits.wall_s, limits=limits, exited=exited)
    finally:
        side += drain(side_read)
        child_pid = namespace_init_pid(side)
        _kill_everything(proc.pid, child_pid)
        if status is None:
            _, status = os.waitpid(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        _wait_reaped(child_pid)
        usage = group.finish() if group else None  # what is left in the cgroup (unsandboxed: a setsid daemon) dies
        side += drain(side_read)
        os.close(side_read)
    cpu = usage.cpu_s if usage and usage.cpu_s is not None else _children_cpu(side)
    limit_hit = usage.limit_hit if usage else None
    return run_result(
        collected, code=proc.returncode, cpu_s=cpu, started=started, limits=limits, mode=mode, limit_hit=limit_hit
    )


def spawn(
    command: Sequence[str], *, join: Sequence[int] = (), lasting: bool = False, **popen: Any
) -> subprocess.Popen[bytes]:
    """subprocess.Popen(command, **popen), tied to this process: the child dies with it, even if it dies first.

    In the child, before exec: PR_SET_PDEATHSIG(SIGKILL), then an immediate exit if this process is already gone
    (killed between fork and prctl: the signal would never come), then b"0" written to each descriptor of `join`
    (cgroups.RunGroup.open_procs), so that everything the command starts is in the run's cgroup from the start.
    The parent-death signal fires when the parent *thread* exits: a child that must outlive this call
    (`lasting`, the warm zygote) is started from a thread that lives as long as the process.
    """
    parent = os.getpid()
    prctl = _libc.prctl  # looked up here, so the child does as little as possible between fork and exec

    def tie() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(_ORPHANED)
        for fd in join:
            os.write(fd, b"0")

    # A preexec_fn is unsafe in a threaded process when it takes a lock another thread may hold at fork; tie() takes
    # none (three system calls). It also makes Popen fork instead of vfork: a cost of well under a millisecond here.
    def start() -> subprocess.Popen[bytes]:  # the callers read bytes: none passes text=True or an encoding
        return subprocess.Popen(command, preexec_fn=tie, **popen)

    if lasting and threading.current_thread() is not threading.main_thread():
        return _LastingThread.of_this_process().call(start)
    return start()


_T = TypeVar("_T")
#: A call for the lasting thread: the function, the list its (result, exception) goes to, the event set when done.
_Call = tuple[Callable[[], object], list[tuple[object, BaseException | None]], threading.Event]


class _LastingThread:
    """A daemon thread that lives as long as its process and runs calls for others: the parent of lasting children.

    A thread pool's worker exits when its pool shuts down, and a child it started would get its parent-death
    signal then; this one never exits (a forked child process gets its own).
    """

    _current: _LastingThread | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="reviewapp-lasting", daemon=True).start()

    @classmethod
    def of_this_process(cls) -> _LastingThread:
        with cls._lock:
            if cls._current is None or cls._current.owner != os.getpid():
                cls._current = cls()
            return cls._current

    def call(self, function: Callable[[], _T]) -> _T:
        """function() run on the lasting thread; its result, or its exception raised here."""
        done = threading.Event()
        outcome: list[tuple[object, BaseException | None]] = []
        self.calls.put((function, outcome, done))
        done.wait()
        value, error = outcome[0]
        if error is not None:
            raise error
        return cast(_T, value)  # what function() returned

    def _serve(self) -> None:
        while True:
            function, outcome, done = self.calls.get()
            try:
                outcome.append((function(), None))
            except BaseException as exc:  # handed to the caller
                outcome.append((None, exc))
            done.set()


@dataclass(frozen=True)
class Collected:
    """The command's output under the cap, and whether the wall clock ran out first."""

    output: bytes
    truncated: bool
    timed_out: bool


def collect_output(fd: int, *, deadline: float, limits: RunLimits, exited: Callable[[], bool]) -> Collected:
    """Read `fd` until end of file, keeping at most limits.output_bytes, or until `deadline` (monotonic).

    `exited()` says whether the command itself has ended; half a second after that, whatever it left behind
    that still holds the pipe open is not waited for.
    """
    kept = bytearray()
    truncated = timed_out = False
    exited_at: float | None = None
    os.set_blocking(fd, False)
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            if exited_at is not None and now - exited_at > 0.5:
                break  # the command is gone; something it left behind still holds the pipe open
            if selector.select(timeout=min(0.1, deadline - now)):
                chunk = _read_some(fd)
                if chunk is None:
                    break  # EOF: every writer is gone
                room = limits.output_bytes - len(kept)
                if len(chunk) > room:
                    truncated = True
                kept += chunk[: max(room, 0)]
            if exited_at is None and exited():
                exited_at = time.monotonic()
    return Collected(bytes(kept), truncated, timed_out)


def run_result(
    collected: Collected,
    *,
    code: int,
    cpu_s: float,
    started: float,
    limits: RunLimits,
    mode: str = "bwrap",
    limit_hit: str | None = None,
    warm: bool = False,
) -> RunResult:
    """The RunResult of a run from its output, its exit code as a shell reports it, and its CPU time.

    `limit_hit`: the limit the kernel saw the run hit in its cgroup ("memory", "pids"), if any. `warm`: the run forked
    from the warm zygote.
    """
    # The command's output is the patch's to write: a NUL in it would make the stored evidence unstorable.
    output = storable(collected.output.decode("utf-8", errors="replace"))
    returncode = None if collected.timed_out else _exit_code(code)
    return RunResult(
        returncode=returncode,
        output=output,
        truncated=collected.truncated,
        timed_out=collected.timed_out,
        resource_limit=None if collected.timed_out else _limit_hit(returncode, output, cpu_s, limits, limit_hit),
        wall_s=round(time.monotonic() - started, 4),
        cpu_s=round(cpu_s, 4),
        sandbox=mode,
        warm=warm,
    )


def _read_some(fd: int) -> bytes | None:
    """Read what is available on `fd`; None at end of file."""
    try:
        data = os.read(fd, _READ_CHUNK)
    except BlockingIOError:
        return b""
    return data or None


def drain(fd: int) -> bytes:
    """Whatever is waiting on the side pipe now, without blocking."""
    os.set_blocking(fd, False)
    data = bytearray()
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, _READ_CHUNK):
            data += chunk
    return bytes(data)


def namespace_init_pid(side: bytes | bytearray) -> int | None:
    """The host pid of the sandbox's PID 1, from bwrap's --info-fd JSON (None unsandboxed or if bwrap failed)."""
    match = re.search(rb'"child-pid"\s*:\s*(\d+)', side)
    return int(match.group(1)) if match else None


def _children_cpu(side: bytes | bytearray) -> float:
    """User + system seconds of the command and its waited-for children, from bash's `times` output."""
    lines = re.findall(rb"(\d+)m([\d.]+)s (\d+)m([\d.]+)s", side)
    if not lines:
        return 0.0  # killed before bash could report
    user_min, user_s, sys_min, sys_s = lines[-1]
    return 60 * int(user_min) + float(user_s) + 60 * int(sys_min) + float(sys_s)


def _kill_everything(group: int, child_pid: int | None) -> None:
    """SIGKILL the process group we started and the namespace's PID 1 (whose death kills the whole namespace)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)
    if child_pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child_pid, signal.SIGKILL)


def _wait_reaped(pid: int | None) -> None:
    """Wait until the namespace's PID 1 is gone (or a zombie): by then the kernel has killed all its processes."""
    if pid is None:
        return
    give_up = time.monotonic() + _REAP_WAIT_S
    while time.monotonic() < give_up:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.005)


def _exit_code(code: int) -> int:
    """The command's exit code; a death by signal N is reported as -N (bash in front of it reports 128 + N).

    A command that exits with 128 + N on purpose looks the same: a heuristic, see _limit_hit.
    """
    if code > 128:
        return -(code - 128)
    return code


def _limit_hit(code: int | None, output: str, cpu_s: float, limits: RunLimits, kernel: str | None) -> str | None:
    """Best guess at which limit stopped the command: a signal first, then the kernel's word, then the output.

    SIGXCPU means "cpu", SIGXFSZ "file_size"; then what the run's cgroup recorded (`kernel`: an OOM kill is
    "memory", a fork refused at the run's process limit "pids"), which the command cannot fake or hide. Then
    heuristics: SIGKILL with the CPU time at the limit means "cpu"; "File too large" means "file_size";
    MemoryError and allocation failures mean "memory"; EAGAIN from fork or thread creation means "pids".
    A command that succeeded hit nothing.
    """
    if code is None or code == 0:
        return None
    if -code in _SIGNAL_LIMITS:
        return _SIGNAL_LIMITS[-code]
    if kernel is not None:
        return kernel
    if code == -signal.SIGKILL and cpu_s >= limits.cpu_s * 0.95:
        return "cpu"
    for name, pattern in _TEXT_LIMITS:
        if pattern.search(output):
            return name
    return None
