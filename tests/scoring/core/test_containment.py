"""Containment of the whole run: limits on all its processes together, and nothing outliving the worker.

Per-process limits (RLIMIT_AS, RLIMIT_NPROC) do not bound a run that forks: each child gets its own. The run's
cgroup does (scoring.core.sandbox.cgroups). And a worker killed with SIGKILL at any instant, even while bwrap is still
setting the sandbox up, leaves no bwrap and no sandboxed process behind (scoring.core.sandbox.bwrap.spawn).
Each attack runs cold (one bwrap per command) and warm (forked from the zygote), with real bubblewrap.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from scoring.core.sandbox import bwrap, cgroups, warm
from scoring.core.sandbox import process as sandbox
from scoring.core.types import RunLimits, RunResult

ROOT = Path(__file__).resolve().parents[3]
PYTEST = ["env", "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1", "python", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
#: Four children of 200 MB each: every one far under its address-space limit, 800 MB together.
MEMORY = RunLimits(wall_s=60, cpu_s=30, memory_bytes=1 << 30, run_memory_bytes=512 << 20)
#: RLIMIT_NPROC far above what the run as a whole may have, and room in the address space for every thread's
#: stack: only the run's cgroup stops the bomb.
PIDS = RunLimits(wall_s=60, cpu_s=30, memory_bytes=8 << 30, max_pids=1024, run_max_pids=40)


@pytest.fixture(autouse=True)
def no_cgroup_left() -> Iterator[None]:
    """Every test ends with its zygotes stopped and none of this process's run cgroups left."""
    warm.close_all()
    yield
    warm.close_all()
    layout = cgroups.usable_layout()
    assert layout is not None, "cgroups must be usable on the test machine (root, cgroup v1 or v2)"
    mine = f"reviewapp-{os.stat('/proc/self/ns/pid').st_ino}.{os.getpid()}."
    assert [entry for entry in os.listdir(layout.memory) if entry.startswith(mine)] == []


def run(tmp_path: Path, name: str, test_code: str, limits: RunLimits, *, warm_run: bool) -> RunResult:
    """Run a pytest file (a runs folder as scratch_copy makes one) cold or warm; a warm run must really be warm."""
    tree, report = tmp_path / "runs" / name / "tree", tmp_path / "runs" / name / "report"
    tree.mkdir(parents=True)
    report.mkdir()
    (tree / "test_attack.py").write_text(textwrap.dedent(test_code))
    before = warm.stats["warm"]
    result = sandbox.run([*PYTEST, "test_attack.py"], tree=tree, report_dir=report, limits=limits, warm=warm_run)
    assert warm.stats["warm"] == before + warm_run, dict(warm.stats)
    return result


FORKED_CHILDREN = """
    import os, time

    def test_four_children_of_200_mb():
        children = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                block = b"x" * (200 << 20)  # written, so resident
                time.sleep(3)
                os._exit(0)
            children.append(pid)
        statuses = [os.waitpid(pid, 0)[1] for pid in children]
        assert statuses == [0, 0, 0, 0]
"""

SPAWNED_CHILDREN = """
    import subprocess, sys

    def test_four_programs_of_200_mb():
        code = "import time; block = b'x' * (200 << 20); time.sleep(3)"
        children = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(4)]
        assert [child.wait() for child in children] == [0, 0, 0, 0]
"""


@pytest.mark.parametrize(("attack", "warm_run"), [(FORKED_CHILDREN, False), (SPAWNED_CHILDREN, True)])
def test_children_that_together_exceed_the_run_memory_are_stopped(tmp_path: Path, attack: str, warm_run: bool) -> None:
    result = run(tmp_path, "memory", attack, MEMORY, warm_run=warm_run)
    assert result.returncode == 1, result.output
    assert result.resource_limit == "memory", result.output
    assert "MemoryError" not in result.output  # no child hit its own limit: the run's limit stopped them


PROCESS_BOMB = """
    import os, time

    def test_two_hundred_processes():
        made = 0
        for _ in range(200):
            try:
                if os.fork() == 0:
                    time.sleep(10)
                    os._exit(0)
                made += 1
            except OSError:
                pass  # swallowed: no error text tells on the bomb
        print("made", made)
        assert made == 200
"""

THREAD_BOMB = """
    import threading, time

    def test_two_hundred_threads():
        made = 0
        for _ in range(200):
            try:
                threading.Thread(target=time.sleep, args=(10,), daemon=True).start()
                made += 1
            except RuntimeError:
                pass  # swallowed: no error text tells on the bomb
        print("made", made)
        assert made == 200
"""


@pytest.mark.parametrize(("attack", "warm_run"), [(PROCESS_BOMB, False), (THREAD_BOMB, True)])
def test_a_bomb_past_the_run_process_limit_is_stopped(tmp_path: Path, attack: str, warm_run: bool) -> None:
    result = run(tmp_path, "bomb", attack, PIDS, warm_run=warm_run)
    assert result.returncode == 1, result.output
    made = int(re.search(r"made (\d+)", result.output).group(1))
    assert made < PIDS.run_max_pids
    assert result.resource_limit == "pids"


def test_cpu_time_counts_children_nobody_waited_for(tmp_path: Path) -> None:
    """bash's `times` counts only the children it waited for; the run's cgroup counts every process."""
    code = """
        import os, time
        if os.fork() == 0:
            end = time.process_time() + 0.8
            while time.process_time() < end:
                pass
            open("done", "w").close()
            os._exit(0)
        while not os.path.exists("done"):  # never waits for the child: the sandbox's init reaps it
            time.sleep(0.05)
    """
    tree = tmp_path / "tree"
    tree.mkdir()
    limits = RunLimits(wall_s=20)
    result = sandbox.run(["python", "-c", textwrap.dedent(code)], tree=tree, limits=limits, allow_unsandboxed=True)
    assert result.returncode == 0, result.output
    assert result.cpu_s >= 0.75


WORKER = """
import os, signal, subprocess, sys, time
from pathlib import Path
from scoring.core.sandbox import bwrap, cgroups, process as sandbox, warm

delay, folder, kind, marker = float(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
bwrap.sandbox_mode(False)
if (group := cgroups.create(memory_bytes=None, max_pids=None)) is not None:
    group.finish()  # the layout checked, this process's watcher started
start_popen = subprocess.Popen.__init__


def popen_then_die(self, args, *rest, **kwargs):
    start_popen(self, args, *rest, **kwargs)
    if not any(part.endswith("/bwrap") for part in args):
        return
    if kind == "warm" and os.fork() == 0:
        # A holder of the worker's end of the zygote's socket: the zygote would otherwise see the worker gone
        # after its warm-up and leave by itself; held, only bwrap dying with the worker can end it.
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        (folder / "holder").write_text(str(os.getpid()))
        time.sleep(60)
        os._exit(0)
    time.sleep(delay)
    os.kill(os.getpid(), signal.SIGKILL)


subprocess.Popen.__init__ = popen_then_die
if kind == "cold":
    sandbox.run(["sleep", marker], tree=folder / "tree")
else:
    warm.prestart(folder / "runs")
"""


def leftovers(marker: str, folder: Path) -> list[str]:
    """Processes of the killed worker's sandbox: bwrap (its arguments name the folder), or the marked command."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if (
            proc.info["status"] != psutil.STATUS_ZOMBIE
            and (marker in cmdline or any(str(folder) in part for part in cmdline[1:] if part != "-c"))
            and cmdline[1:2] != ["-c"]
        ):  # not the holder, a fork of the worker
            found.append(" ".join(cmdline)[:200])
    return found


@pytest.mark.parametrize(
    ("kind", "delays"),
    [
        # From right after Popen (bwrap not even started) through bwrap's set-up (its --die-with-parent unarmed).
        ("cold", [0.0] * 6 + [0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.08]),
        ("warm", [0.0] * 10),
    ],
)
def test_a_worker_killed_right_after_starting_bwrap_leaves_nothing_behind(
    tmp_path: Path, kind: str, delays: list[float]
) -> None:
    for attempt, delay in enumerate(delays):
        folder = tmp_path / f"attempt{attempt}"
        (folder / "tree").mkdir(parents=True)
        (folder / "runs").mkdir()
        marker = f"{1000 + attempt}.{os.getpid()}"
        worker = subprocess.run(
            [sys.executable, "-c", WORKER, str(delay), str(folder), kind, marker],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            timeout=60,
            check=False,
        )
        holder = folder / "holder"
        try:
            assert worker.returncode == -signal.SIGKILL, worker.stderr.decode()[-2000:]
            deadline = time.monotonic() + 5
            while found := leftovers(marker, folder):
                assert time.monotonic() < deadline, f"left behind after a kill {delay} s after Popen: {found}"
                time.sleep(0.05)
        finally:
            if holder.exists():
                os.kill(int(holder.read_text()), signal.SIGKILL)


def test_a_zygote_started_from_a_passing_thread_outlives_the_thread(tmp_path: Path) -> None:
    """The parent-death signal fires when the parent *thread* exits: a zygote outlives the thread that started it."""
    runs = tmp_path / "runs"
    runs.mkdir()
    started = threading.Thread(target=warm.prestart, args=(runs,))
    started.start()
    started.join()
    (zygote,) = warm._zygotes.values()
    time.sleep(0.5)
    assert zygote.process.poll() is None, "the zygote died with the thread that started it"
    tree = runs / "one" / "tree"
    tree.mkdir(parents=True)
    (tree / "test_one.py").write_text("def test_one():\n    pass\n")
    result = sandbox.run([*PYTEST, "test_one.py"], tree=tree, limits=RunLimits(wall_s=30), warm=True)
    assert result.returncode == 0, result.output
    assert list(warm._zygotes.values()) == [zygote]


def test_an_unsandboxed_run_leaves_no_daemon_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without bubblewrap there is no PID namespace to take a `setsid` daemon down: the run's cgroup does."""
    monkeypatch.setattr(bwrap, "_bwrap_problem", lambda: "bwrap is not installed")
    marker = f"{2000 + os.getpid() % 1000}.5"
    code = f"""
        import os, subprocess
        subprocess.Popen(["setsid", "sleep", "{marker}1"], start_new_session=True)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execvp("sleep", ["sleep", "{marker}2"])
            os._exit(0)
        print("parent leaves")
    """
    tree = tmp_path / "tree"
    tree.mkdir()
    limits = RunLimits(wall_s=20)
    result = sandbox.run(["python", "-c", textwrap.dedent(code)], tree=tree, limits=limits, allow_unsandboxed=True)
    try:
        assert result.sandbox == "unsandboxed" and "parent leaves" in result.output, result.output
        assert leftovers(f"{marker}1", tree) == [] and leftovers(f"{marker}2", tree) == []
    finally:
        for proc in psutil.process_iter(["cmdline"]):
            if (proc.info["cmdline"] or [])[-1:] in ([f"{marker}1"], [f"{marker}2"]):
                proc.kill()
