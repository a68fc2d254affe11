"""One cgroup per sandboxed run: memory and process limits for the run as a whole, its CPU time, and a kill.

rlimits bind one process each: a run that forks N children, each just under RLIMIT_AS, takes N times the memory.
A cgroup counts every process of the run together, whoever forked it and whatever it became (a `setsid` daemon,
a thread, a child of a child), and the kernel's CPU accounting of it includes children nobody waited for.

A run's cgroup is a child of the worker's own cgroup in each hierarchy (so every limit set above the worker,
by systemd or a container, still binds the run), named `reviewapp-NS.PID.START-N` after the worker process that
owns it (NS: its PID namespace; START: its start time, so a reused pid is not mistaken for the owner). Two layouts:

- cgroup v1 (separate hierarchies): `memory` (memory.limit_in_bytes, memory.memsw.limit_in_bytes when swap is
  accounted), `pids` (pids.max) and, when mounted, `cpuacct` (cpuacct.usage); an OOM kill is read from
  memory.oom_control (`oom_kill`), a refused fork from pids.events (`max`). v1 has no cgroup.kill: what is left
  is SIGKILLed from cgroup.procs until it is empty (pids.max bounds a fork bomb, so this ends).
- cgroup v2 (one hierarchy): memory.max, memory.swap.max, pids.max, cpu.stat, memory.events, pids.events and
  cgroup.kill. The worker's cgroup must have memory and pids in its cgroup.subtree_control, or accept them
  (a v2 cgroup holding processes cannot: delegate a subtree to the worker, see docs/sandbox.md).

A process joins by writing "0" (itself) to each cgroup.procs, through descriptors opened here: a cold run does it
in the child before exec (scoring.core.sandbox.bwrap.spawn), a warm run in its supervisor, forked one run ahead, with
the descriptors sent to the zygote (scoring.core.sandbox.zygote). A worker killed with SIGKILL leaves its cgroups to its
watcher (`watch`), or to the next worker's sweep. Without a usable layout (not root, a controller missing)
`create` returns None, runs keep their per-process limits only, and a warning is logged once per process.

Pure Python, standard library only, no Django.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: How long to wait for the processes of a run to leave its cgroup after SIGKILL before giving up on removal.
_EMPTY_WAIT_S = 5.0
_NAME = re.compile(r"reviewapp-(\d+)\.(\d+)\.(\d+)-\d+")
_log = logging.getLogger(__name__)
_counter = itertools.count()
#: Cgroups this process could not remove yet (a process was slow to die): retried at the next create.
_pending: list[RunGroup] = []
#: The process that last swept the cgroups of dead workers (each process does it at its first run).
_swept_by: int | None = None
#: This process's watcher (see `watch`).
_watcher: subprocess.Popen[bytes] | None = None


@dataclass(frozen=True)
class Usage:
    """What the kernel accounted for a finished run: CPU seconds (None when not accounted) and a limit it hit."""

    cpu_s: float | None
    limit_hit: str | None  # "memory" (an OOM kill in the cgroup) | "pids" (a fork refused at pids.max) | None


@dataclass(frozen=True)
class Layout:
    """Where this process's run cgroups go: cgroup version and the parent folder per controller (v1) or one (v2)."""

    version: int
    memory: Path
    pids: Path
    cpu: Path | None  # v1 cpuacct (None when not mounted); v2: the same folder as the others


class RunGroup:
    """One run's cgroup. Create with `create`; `finish` kills what is left, reads the accounting and removes it."""

    def __init__(self, layout: Layout, name: str) -> None:
        self.layout = layout
        self.memory = layout.memory / name
        self.pids = layout.pids / name
        self.cpu = layout.cpu / name if layout.cpu is not None else None
        #: Every folder of the run, each once (v2: one; v1: one per hierarchy).
        self.folders = list(dict.fromkeys(p for p in (self.memory, self.pids, self.cpu) if p is not None))

    def open_procs(self) -> list[int]:
        """Write-only descriptors to each cgroup.procs: writing b"0" to all of them moves the writer in.

        Opened here, by the worker: the permission to move a process is checked against whoever opened the file,
        so a process without privileges (the zygote's run) can still join through them. The caller closes them.
        """
        fds: list[int] = []
        try:
            for folder in self.folders:
                fds.append(os.open(folder / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            close(fds)
            raise
        return fds

    def set_limits(self, *, memory_bytes: int | None, max_pids: int | None) -> None:
        """Set the memory limit (no swap on top) and the process limit of the whole group; None: no limit."""
        if self.layout.version == 2:
            (self.memory / "memory.max").write_text("max" if memory_bytes is None else str(memory_bytes))
            _write_if_present(self.memory / "memory.swap.max", "0")
        else:
            # v1 keeps memory+swap (memsw, when swap is accounted) at or above memory: raise it first, lower it last.
            files = [self.memory / "memory.limit_in_bytes", self.memory / "memory.memsw.limit_in_bytes"]
            if memory_bytes is None or memory_bytes > int(files[0].read_text()):
                files.reverse()
            for path in files:
                _write_if_present(path, "-1" if memory_bytes is None else str(memory_bytes))
        (self.pids / "pids.max").write_text("max" if max_pids is None else str(max_pids))

    def finish(self) -> Usage:
        """Kill every process still in the cgroup, read what the kernel accounted, remove the cgroup. Safe twice."""
        self.kill()
        usage = Usage(cpu_s=self._cpu_s(), limit_hit=self._limit_hit())
        if not self.remove():
            _pending.append(self)
        return usage

    def kill(self) -> None:
        """SIGKILL every process in the cgroup and wait (a few seconds at most) until none is left."""
        kill_file = self.memory / "cgroup.kill"
        if self.layout.version == 2 and kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        give_up = time.monotonic() + _EMPTY_WAIT_S
        while (pids := self.processes()) and time.monotonic() < give_up:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)

    def processes(self) -> set[int]:
        """The pids (in this process's PID namespace) of every process in the cgroup, in any of its folders."""
        found: set[int] = set()
        for folder in self.folders:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(line) for line in (folder / "cgroup.procs").read_text().split())
        return found

    def remove(self, wait_s: float = _EMPTY_WAIT_S) -> bool:
        """Remove the cgroup's folders (a folder can go once no process is in it); True when all are gone.

        A process just killed may take a moment to leave: retried for up to `wait_s` seconds.
        """
        give_up = time.monotonic() + wait_s
        for folder in self.folders:
            while True:
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > give_up:
                        return False
                    time.sleep(0.005)
        return True

    def _cpu_s(self) -> float | None:
        try:
            if self.layout.version == 2:
                usec = _field(self.memory / "cpu.stat", "usage_usec")
                return None if usec is None else usec / 1e6
            if self.cpu is not None:
                return int((self.cpu / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            pass
        return None

    def _limit_hit(self) -> str | None:
        events = "memory.events" if self.layout.version == 2 else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            oom = _field(self.memory / events, "oom_kill")
            if oom is None:  # a v1 kernel older than 4.13: only the count of times the limit was reached
                oom = int((self.memory / "memory.failcnt").read_text())
            if oom > 0:
                return "memory"
        with contextlib.suppress(OSError, ValueError):
            if (_field(self.pids / "pids.events", "max") or 0) > 0:
                return "pids"
        return None


def create(*, memory_bytes: int | None, max_pids: int | None) -> RunGroup | None:
    """A new cgroup with these limits for all its processes together (None: no limit); None when unusable.

    The first call in a process checks the layout (and logs once why it is unusable), removes the cgroups that
    dead workers left behind, killing what is still in them, and starts this process's watcher (`watch`).
    """
    global _swept_by
    layout = usable_layout()
    if layout is None:
        return None
    if _swept_by != os.getpid():  # once per process: a pool child forked after the check does it too
        _swept_by = os.getpid()
        sweep(layout)
        _start_watcher()
    for stale in list(_pending):
        if stale.remove(wait_s=0):
            _pending.remove(stale)
    group = _make(layout, memory_bytes=memory_bytes, max_pids=max_pids)
    if group is None:
        _log.warning("could not create a run cgroup under %s: this run has per-process limits only", layout.memory)
    return group


def close(fds: list[int]) -> None:
    """Close descriptors from RunGroup.open_procs."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


@functools.cache
def usable_layout() -> Layout | None:
    """This process's layout when a trial cgroup works here (checked once per process), else None, logged once."""
    layout, problem = _find_layout()
    if layout is not None:
        trial = _make(layout, memory_bytes=64 << 20, max_pids=8)
        if trial is None:
            problem = f"cannot create a cgroup under {layout.memory} (not root, or the folder is not delegated)"
        else:
            trial.finish()
    if problem is not None:
        _log.warning(
            "cgroups unusable (%s): sandboxed runs keep their per-process limits (RLIMIT_AS, RLIMIT_NPROC) but have "
            "no memory or process limit for the run as a whole; see docs/sandbox.md, 'Containment of the whole run'",
            problem,
        )
        return None
    return layout


def sweep(layout: Layout) -> None:
    """Kill and remove the run cgroups whose owner process is gone (a worker killed in the middle of a run)."""
    for parent in dict.fromkeys(p for p in (layout.memory, layout.pids, layout.cpu) if p is not None):
        try:
            entries = list(os.scandir(parent))
        except OSError:
            continue
        for entry in entries:
            match = _NAME.fullmatch(entry.name)
            # Only owners this process can see: a worker in another PID namespace may share the parent folder.
            if not (match and entry.is_dir() and int(match.group(1)) == _pid_namespace()):
                continue
            if _start_time(int(match.group(2))) != int(match.group(3)):
                # One hierarchy at a time (v1 has one per controller): a group of just that folder.
                group = RunGroup(Layout(layout.version, parent, parent, None), entry.name)
                group.kill()
                group.remove()


def _make(layout: Layout, *, memory_bytes: int | None, max_pids: int | None) -> RunGroup | None:
    """Create the folders of a new run cgroup and set its limits; None (and nothing left behind) on failure."""
    me = os.getpid()
    group = RunGroup(layout, f"reviewapp-{_pid_namespace()}.{me}.{_start_time(me)}-{next(_counter)}")
    try:
        for folder in group.folders:
            folder.mkdir()
        group.set_limits(memory_bytes=memory_bytes, max_pids=max_pids)
    except (OSError, ValueError) as exc:
        _log.debug("run cgroup not created: %s", exc)
        group.remove()
        return None
    return group


def watch(owner: int, start: int) -> None:
    """Wait until process `owner` (started at `start`) has exited, then kill and remove the cgroups it left.

    A worker killed with SIGKILL cannot clean up after itself, and the parent-death signal does not reach
    everything: bwrap's child, for one, is not tied to its parent until the sandbox is set up. Whatever is in
    the worker's run cgroups dies here, whenever the worker died. The watcher is a process of its own (one per
    worker process, started with its first run cgroup) in a session of its own, so no kill aimed at the worker
    or at a run reaches it.
    """
    with contextlib.suppress(OSError):
        worker = os.pidfd_open(owner)
        if _start_time(owner) == start:  # the same process, not one that reused its pid
            select.select([worker], [], [])  # readable once it has exited
    layout, _ = _find_layout()
    if layout is not None:
        sweep(layout)


def _start_watcher() -> None:
    global _watcher
    me = os.getpid()
    command = [sys.executable, "-I", "-S", __file__, "--watch", str(me), str(_start_time(me))]
    try:
        # Nothing of the worker's is held (its output pipes above all: whoever reads them would wait for this).
        _watcher = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        _log.warning("no watcher for this worker's run cgroups (%s): they are removed at the next worker's start", exc)


def _find_layout() -> tuple[Layout | None, str | None]:
    """(layout, None) when memory and pids controllers are mounted and this process's cgroups are known."""
    if os.geteuid() != 0:
        return None, "the worker is not root"
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        membership = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError as exc:
        return None, str(exc)
    v1: dict[str, tuple[Path, str]] = {}  # controller -> (mount point, root of the hierarchy at that mount)
    v2: tuple[Path, str] | None = None
    for line in mounts:
        fields = line.split()
        if " - " not in line:
            continue
        fstype, _, options = line.split(" - ", 1)[1].split()[:3]
        point, root = Path(_unescape(fields[4])), _unescape(fields[3])
        if fstype == "cgroup":
            for option in options.split(","):
                v1.setdefault(option, (point, root))
        elif fstype == "cgroup2" and v2 is None:
            v2 = (point, root)
    paths: dict[str, str] = {}  # controller ("" for v2) -> this process's cgroup path in that hierarchy
    for line in membership:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    if "memory" in v1 and "pids" in v1:
        parents = {c: _inside(*v1[c], paths.get(c)) for c in ("memory", "pids", "cpuacct") if c in v1}
        if parents["memory"] is None or parents["pids"] is None:
            return None, "this process's memory or pids cgroup is not visible in the mounted hierarchy"
        return Layout(1, parents["memory"], parents["pids"], parents.get("cpuacct")), None
    if v2 is not None:
        parent = _inside(*v2, paths.get(""))
        if parent is None:
            return None, "this process's cgroup v2 folder is not visible in the mounted hierarchy"
        available = set((parent / "cgroup.controllers").read_text().split()) if parent.exists() else set()
        if not {"memory", "pids"} <= available:
            return None, f"the memory and pids controllers are not available in {parent} (cgroup v2)"
        enabled = set((parent / "cgroup.subtree_control").read_text().split())
        if not {"memory", "pids"} <= enabled:
            try:
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
            except OSError as exc:
                return None, f"cannot enable memory and pids in {parent}/cgroup.subtree_control ({exc.strerror})"
        return Layout(2, parent, parent, parent), None
    return None, "no memory and pids cgroup controllers are mounted"


def _inside(point: Path, root: str, path: str | None) -> Path | None:
    """The folder of cgroup `path` under a hierarchy mounted at `point` showing its `root`; None if not below it."""
    if path is None:
        return None
    if root != "/" and path != root and not path.startswith(root.rstrip("/") + "/"):
        return None
    relative = path[len(root) :] if root != "/" else path
    return point / relative.lstrip("/")


def _unescape(text: str) -> str:
    """mountinfo escapes spaces, tabs, newlines and backslashes as octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _field(path: Path, name: str) -> int | None:
    """The number after `name` in a flat-keyed cgroup file ("name value" per line); None when it has no such line."""
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return int(value)
    return None


def _write_if_present(path: Path, value: str) -> None:
    if path.exists():
        path.write_text(value)


def _pid_namespace() -> int:
    """The inode of this process's PID namespace: owner pids in cgroup names mean something only within it."""
    return os.stat("/proc/self/ns/pid").st_ino


def _start_time(pid: int) -> int | None:
    """The start time of process `pid` (clock ticks since boot, from /proc), None when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


if __name__ == "__main__":
    # python -I -S cgroups.py --watch PID START: the watcher of one worker process.
    if sys.argv[1:2] == ["--watch"]:
        watch(int(sys.argv[2]), int(sys.argv[3]))
