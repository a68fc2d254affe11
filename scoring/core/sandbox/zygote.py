"""The warm runner's zygote: imports pytest once, then forks one sandboxed Python run per request.

This file runs INSIDE bubblewrap, started by sandbox.warm as `python /sandbox/zygote.py FD PREFIXES`, where FD is a
SOCK_SEQPACKET socket to the worker. It imports only the standard library and pytest (never the project), so it
is copied into the sandbox as a single read-only file.

Why: a sandboxed `python -m pytest` spends about 0.2 s starting Python and importing pytest before the first test,
which is most of the cost of scoring a small patch. Here that is paid once per worker. Each run still gets what
a fresh bubblewrap would give it (docs/sandbox.md, "Warm test runs"):

    zygote (root inside bwrap, CAP_SYS_ADMIN/NET_ADMIN/SETUID/SETGID/SETPCAP; never runs untrusted code, and
      |     starts without the task environment on its path)
      `- supervisor: unshare(mount, PID, IPC, network namespaces), reports the run's status and CPU time
           `- init (PID 1 of the new PID namespace): private mounts, `lo` up, limits, a fresh uid, reaps
                `- python (PID 2): the untrusted run (pytest, the benchmark, the probe), output on the worker's pipe

- the run's tree and report folder are bind-mounted at /sandbox/tree and /sandbox/report, and the folder holding
  every run (/sandbox/runs) is unmounted from the run's namespace: a run sees no other run;
- /proc is the new PID namespace's, /tmp and /dev/shm are fresh tmpfs mounts, the network namespace is new:
  nothing survives from one run to the next, and no process survives its run (the PID namespace dies with init);
- rlimits (CPU, address space, file size, processes), then the capability bounding set is emptied, groups
  cleared, a fresh uid and gid set, every capability cleared and no_new_privs armed, all before any file of the
  tree or the task environment is read;
- every file descriptor but 0, 1 and 2 is closed, so the run cannot reach the worker's socket or the zygote;
- the supervisor is in the run's cgroup before the run starts: the worker sends the cgroup.procs descriptors of
  the NEXT run's cgroup with each request, and the zygote forks that run's supervisor at once, which joins and
  waits for its request (a standby: joining costs an RCU grace period, so it is paid during the previous run).
  The run's processes together are held to its memory and process limits; the worker kills what is left.

Protocol: the zygote sends {"ready": true, "modules": [...]} once warm (the top-level modules it imported). Each
request is one JSON message with the write end of the run's output pipe attached (SCM_RIGHTS), followed by the next
run's cgroup.procs descriptors, if any: {"id", "in_cgroup" (run it in the standby's cgroup), "tree", "report" (paths
under /sandbox/runs, report may be null), "program" ({"module" | "path" | "code", "args"}: what follows `python`),
"env" (extra variables), "uid", "limits" (with "cpus", the run's CPUs, or [])}. The answer echoes the id with
{"code", "cpu_s"} (`code` as a shell reports it: 128 + N for a death by signal N), or {"error", "ran": false} when
the run could not be set up (no untrusted code ran, so the worker runs it the ordinary way), or another {"error"}.
{"prepare": true} with cgroup.procs descriptors attached (no answer) makes a standby for the first run, or a new
one.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import ctypes
import fcntl
import gc
import importlib
import importlib.machinery
import importlib.util
import json
import os
import random
import resource
import runpy
import select
import shutil
import socket
import struct
import sys
import tempfile
import traceback
import types

# This file also runs as the sandbox's zygote on a bare interpreter, so it imports nothing for typing at run time:
# the constant is False there, and mypy reads the block as always taken (as it does `typing.TYPE_CHECKING`).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWPID = 0x00020000, 0x08000000, 0x40000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
MS_PRIVATE, MNT_DETACH = 1 << 18, 2
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
RUNS, TREE, REPORT, ENV = "/sandbox/runs", "/sandbox/tree", "/sandbox/report", "/sandbox/env"
#: The folders of the worker's Python (from the worker: sandbox.python_prefixes), read-only in every run.
PYTHON_PREFIXES: tuple[str, ...] = ()
#: Requests carry the program's arguments (hidden test files included): room for long lists.
MAX_MESSAGE = 1 << 20
#: Descriptors a request may carry: the output pipe, then a cgroup.procs per cgroup v1 hierarchy (at most 3).
MAX_FDS = 8
TMPFS_SIZE = "256m"
#: Exit status of init when it could not set the run up (never reached by the untrusted code).
SETUP_FAILED = 125

_libc = ctypes.CDLL(None, use_errno=True)


def main() -> None:
    """Warm up, say so, then serve requests until the worker closes the socket."""
    global PYTHON_PREFIXES
    channel = socket.socket(fileno=int(sys.argv[1]))
    PYTHON_PREFIXES = tuple(json.loads(sys.argv[2]))
    # bwrap arms its --die-with-parent only once the sandbox is set up: a worker killed during the set-up leaves
    # this process alone. Its socket tells (the worker's end is closed); ask before the slow warm-up.
    hung_up = select.poll()
    hung_up.register(channel, 0)  # POLLHUP is always reported
    if hung_up.poll(0):
        return
    warm_up()
    # Every run is a fork: a collection in the child would touch the header of every object the zygote holds and
    # copy the pages they live on. Frozen objects are left out of collections; the warm-up's garbage goes first.
    gc.collect()
    gc.freeze()
    # The top-level modules already imported: a task environment that ships one of them would shadow it in a
    # cold run but not here, so the worker runs such a task cold.
    modules = sorted({name.split(".")[0] for name in sys.modules})
    channel.send(json.dumps({"ready": True, "modules": modules}).encode())
    standby: Standby | None = None
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(channel, MAX_MESSAGE, MAX_FDS)
        except OSError:
            return
        if not message:
            return
        request = json.loads(message)
        if request.get("prepare"):
            _discard(standby)
            standby = prepare(fds)
            continue
        in_cgroup = bool(request.get("in_cgroup"))
        if not fds or (in_cgroup and standby is None):
            for fd in fds:
                os.close(fd)
            why = "no output pipe came with the request" if not fds else "no supervisor stands by in the run's cgroup"
            channel.send(json.dumps({"error": why, "ran": False, "id": request.get("id")}).encode())
            continue
        if not in_cgroup:
            _discard(standby)
        run = start(request, fds[0], standby if in_cgroup else None)
        standby = prepare(fds[1:]) if len(fds) > 1 else None  # the next run's, joining while this one runs
        channel.send(json.dumps({**finish(*run), "id": request.get("id")}).encode())


def warm_up() -> None:
    """Import what a pytest run imports lazily, by running pytest once on an empty folder (nothing is kept).

    Plugins installed beside pytest are not auto-loaded here: the harness never auto-loads them either.
    """
    import pytest  # here, not at the top: after the check in main(), the slowest import of the zygote

    folder = tempfile.mkdtemp()
    saved_environ = dict(os.environ)
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    saved_path, saved_meta_path = list(sys.path), list(sys.meta_path)
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved_out, saved_err = os.dup(1), os.dup(2)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        pytest.main(["-q", "-p", "no:cacheprovider", f"--junitxml={folder}/report.xml", folder])
        for name in ("_pytest.junitxml", "_pytest.pytester", "_pytest.doctest", "xml.dom.minidom", "runpy"):
            importlib.import_module(name)
        importlib.util.find_spec("pytest.__main__")
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for fd in (devnull, saved_out, saved_err):
            os.close(fd)
        sys.path[:], sys.meta_path[:] = saved_path, saved_meta_path
        os.environ.clear()
        os.environ.update(saved_environ)
        shutil.rmtree(folder, ignore_errors=True)


#: A supervisor forked ahead of its request: (pid, the socket its request comes on, the pipe its answer comes on).
Standby = tuple[int, socket.socket, int]


def prepare(join: list[int]) -> Standby:
    """Fork the next run's supervisor ahead of its request; it joins the run's cgroup (`join`) while it waits.

    Moving a process into a cgroup waits for an RCU grace period (about 10 ms here, a fifth of a small warm
    run): done this way, during the previous run, it is off the run's path. Closes the descriptors of `join`.
    """
    control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    result_read, result_write = os.pipe()
    pid = _spawn(stand_by, theirs.fileno(), result_write, join, close=(result_read, control.fileno()))
    theirs.close()
    for fd in (result_write, *join):
        os.close(fd)
    return pid, control, result_read


def stand_by(control_fd: int, result_fd: int, join: list[int]) -> None:
    """In the standby supervisor: join the run's cgroup, wait for the request and its output pipe, supervise it."""
    _close_all_but(control_fd, result_fd, *join)  # the zygote's socket above all
    failed = None
    try:
        for fd in join:  # whatever the run does is counted, limited and killed together
            os.write(fd, b"0")
            os.close(fd)
    except OSError as exc:
        failed = f"could not join the run's cgroup: {exc}"
    with socket.socket(fileno=control_fd) as control:
        message, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, 1)
    if not message or not fds:
        os._exit(0)  # discarded, or the zygote is gone
    if failed:
        os.write(result_fd, json.dumps({"error": failed, "ran": False}).encode())
        os._exit(0)
    supervise(json.loads(message), fds[0], result_fd)


def start(request: dict[str, Any], output_fd: int, standby: Standby | None) -> tuple[int, int]:
    """Start a run: hand it to the standby supervisor, or fork one. (supervisor pid, its answer's pipe)."""
    if standby is None:
        result_read, result_write = os.pipe()
        pid = _spawn(supervise, request, output_fd, result_write, close=(result_read,))
        os.close(result_write)
    else:
        pid, control, result_read = standby
        with contextlib.suppress(OSError):  # a standby that died answers nothing: finish() says so
            socket.send_fds(control, [json.dumps(request).encode()], [output_fd])
        control.close()
    os.close(output_fd)
    return pid, result_read


def finish(pid: int, result_read: int) -> dict[str, Any]:
    """What the run's supervisor reports, once it has ended."""
    with os.fdopen(result_read, "rb") as result:
        data = result.read()
    os.waitpid(pid, 0)
    try:
        answer: dict[str, Any] = json.loads(data)
    except ValueError:
        return {"error": "the run's supervisor died without an answer"}
    return answer


def _discard(standby: Standby | None) -> None:
    """Send a standby supervisor away (it exits when its socket closes) and reap it."""
    if standby is not None:
        pid, control, result_read = standby
        control.close()
        os.close(result_read)
        os.waitpid(pid, 0)


def supervise(request: dict[str, Any], output_fd: int, result_fd: int) -> None:
    """In new mount, PID, IPC and network namespaces, start the run's init and report its status and CPU time."""
    _close_all_but(output_fd, result_fd)  # the zygote's socket above all
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # the zygote's stderr is the worker's log file
        os.dup2(null, fd)
    os.close(null)
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWNET))
    ready_read, ready_write = os.pipe()
    pid = _spawn(init, request, output_fd, ready_write, close=(ready_read, result_fd))  # PID 1 of the namespace
    os.close(output_fd)
    os.close(ready_write)
    with os.fdopen(ready_read, "rb") as ready:
        set_up = ready.read()
    _, status, usage = os.wait4(pid, 0)
    if set_up != b"1":
        why = set_up.decode(errors="replace") or f"init exit status {status}"
        answer: dict[str, Any] = {"error": f"the run could not be set up: {why}", "ran": False}
    else:
        answer = {"code": _shell_code(status), "cpu_s": usage.ru_utime + usage.ru_stime}
    os.write(result_fd, json.dumps(answer).encode())


def init(request: dict[str, Any], output_fd: int, ready_fd: int) -> None:
    """PID 1 of the run: build its private view, drop every privilege, start the program, reap until it ends."""
    _close_all_but(output_fd, ready_fd)
    try:
        _private_mounts(request["tree"], request.get("report"))
        _loopback_up()
        _limit(request["limits"])
        _drop_privileges(int(request["uid"]))
    except Exception:
        os.write(ready_fd, traceback.format_exc()[-2000:].encode())
        os._exit(SETUP_FAILED)
    os.write(ready_fd, b"1")
    os.close(ready_fd)
    pid = _spawn(run_python, request, output_fd, close=())
    os.close(output_fd)
    while True:  # PID 1 adopts every orphan of the run; its exit takes them all down with the namespace
        child, status = os.wait()
        if child == pid:
            os._exit(_shell_code(status))


def run_python(request: dict[str, Any], output_fd: int) -> None:
    """Become `python -m MODULE ARGS`, `python SCRIPT ARGS` or `python -c CODE ARGS` in the tree.

    What a fresh interpreter would give it: the same cwd, `sys.argv`, `sys.path[0]` (the cwd for -m, the script's
    folder for a script, "" for -c, none of them after -P), `__main__` and environment.
    """
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    _close_all_but()
    os.environ.update(request["env"])
    os.chdir(TREE)
    program = request["program"]
    if "module" in program:
        sys.path[0], sys.argv = TREE, ["-m", *program["args"]]  # runpy puts the module's file in argv[0]
        sys.orig_argv = ["python", "-m", program["module"], *program["args"]]
    elif "path" in program:
        script = os.path.abspath(program["path"])
        sys.path[0], sys.argv = os.path.dirname(os.path.realpath(script)), [program["path"], *program["args"]]
        sys.orig_argv = ["python", *sys.argv]
    else:
        sys.path[0], sys.argv = "", ["-c", *program["args"]]
        sys.orig_argv = ["python", "-c", program["code"], *program["args"]]
    if program.get("safe_path"):  # `python -P`: nothing is put in front of the standard library's paths
        del sys.path[0]
        sys.orig_argv.insert(1, "-P")
    if os.path.isdir(ENV):  # what PYTHONPATH would have done at start-up; the zygote itself started without it
        os.environ["PYTHONPATH"] = ENV
        sys.path.insert(1, ENV)
    random.seed()  # a fresh process would not share the zygote's random state
    code: int | str | None  # what SystemExit carries, made an exit status below
    try:
        if "module" in program:
            runpy.run_module(program["module"], run_name="__main__", alter_sys=True)  # as `python -m` does
        else:
            _run_main(program)
        code = 0
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        traceback.print_exc()
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code & 0xFF)


def _run_main(program: dict[str, Any]) -> None:
    """Run a script or `-c` code as `__main__`, the way the interpreter does (a script's __file__ is absolute)."""
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    if "path" in program:
        script = os.path.abspath(program["path"])
        try:
            with open(script, "rb") as handle:
                source = handle.read()
        except OSError as exc:
            print(f"python: can't open file {script!r}: [Errno {exc.errno}] {exc.strerror}", file=sys.stderr)
            raise SystemExit(2) from None
        main.__file__ = script
        main.__cached__ = None  # type: ignore[attr-defined]  # a script's __main__ has it, set to None
        main.__loader__ = importlib.machinery.SourceFileLoader("__main__", script)
        code = compile(source, script, "exec")
    else:
        main.__loader__ = importlib.machinery.BuiltinImporter  # what `-c` gets
        code = compile(program["code"], "<string>", "exec")
    sys.modules["__main__"] = main
    exec(code, main.__dict__)  # noqa: S102 - the run's own program, in its sandbox, as the interpreter would


def _private_mounts(tree: str, report: str | None) -> None:
    """The run's own tree, report folder, /proc, /tmp and /dev/shm; the folder of every run unmounted."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount(_under_runs(tree), TREE, None, MS_BIND)
    if report is not None:
        _mount(_under_runs(report), REPORT, None, MS_BIND)
    _check(_libc.umount2(RUNS.encode(), MNT_DETACH))  # gone from this namespace, not covered: nothing to uncover
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for scratch in ("/tmp", "/dev/shm"):  # noqa: S108 - private tmpfs mounts of this run
        # The worker's Python may live below it (a checkout in /tmp): hold on to it, then mount it back, read-only.
        held = [(path, os.open(path, os.O_PATH)) for path in PYTHON_PREFIXES if path.startswith(scratch + "/")]
        _mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, f"size={TMPFS_SIZE},mode=1777")
        for path, fd in held:
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
            os.close(fd)


def _loopback_up() -> None:
    """Bring `lo` up in the run's fresh network namespace (it starts down), as bwrap does for a cold run."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(probe, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(probe, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _under_runs(relative: str) -> str:
    """The absolute path of a run folder, refusing anything that could leave /sandbox/runs."""
    path = os.path.normpath(os.path.join(RUNS, relative))
    if not path.startswith(RUNS + "/") or os.path.islink(path):
        raise ValueError(f"not a run folder: {relative!r}")
    return path


def _limit(limits: dict[str, Any]) -> None:
    """The same limits `prlimit` (and `taskset`) set on a cold run: SIGXCPU at the CPU limit, SIGKILL one second
    later; the run's CPUs, when given."""
    if limits.get("cpus"):
        os.sched_setaffinity(0, limits["cpus"])
    cpu = int(limits["cpu"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory"], limits["memory"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_size"], limits["file_size"]))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["pids"], limits["pids"]))


def _drop_privileges(uid: int) -> None:
    """Empty the bounding set, then become `uid` (which clears every capability) with no_new_privs."""
    if uid <= 0:
        raise ValueError("a run needs a fresh unprivileged uid")
    cap = 0
    while _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
        cap += 1
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    _clear_capabilities()  # the uid change cleared the permitted and effective sets; this clears inheritable too
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (uid, uid, uid) or any(_capabilities().values()):
        raise RuntimeError(f"privileges were not dropped: {_capabilities()}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _clear_capabilities() -> None:
    """capset(2) with every set empty (version 3: two 32-bit words per set)."""
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data))


def _capabilities() -> dict[str, int]:
    """Every capability set of this process (inheritable, permitted, effective, bounding, ambient)."""
    with open("/proc/self/status") as status:
        return {line.split(":")[0]: int(line.split()[1], 16) for line in status if line.startswith("Cap")}


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def encode(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    _check(_libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)))


def _check(result: int) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _shell_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + N for a death by signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _close_all_but(*keep: int) -> None:
    """Close every file descriptor above 2 except `keep` (close_range: no upper bound to guess)."""
    top = 2**31 - 1
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, top)


def _spawn(function: Callable[..., object], *args: object, close: tuple[int, ...]) -> int:
    """Fork a child that closes `close` and runs `function(*args)`; return its pid to the parent.

    The child leaves with os._exit whatever happens, so it never returns into its parent's code.
    """
    pid = os.fork()
    if pid:
        return pid
    try:
        for fd in close:
            os.close(fd)
        function(*args)
    except BaseException:
        traceback.print_exc()
    os._exit(SETUP_FAILED)


if __name__ == "__main__":
    main()
