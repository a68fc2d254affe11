"""The sandbox runner against hostile commands: each ends with a clear outcome, and nothing is left running."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import psutil
import pytest

from scoring.core.intake.text import unstorable
from scoring.core.sandbox import bwrap, cgroups, warm
from scoring.core.sandbox import process as sandbox
from scoring.core.types import RunLimits

QUICK = RunLimits(wall_s=10, cpu_s=5, memory_bytes=512 << 20, max_pids=32, file_size_bytes=8 << 20)


def _sandboxed_processes(uids: set[int]) -> list[psutil.Process]:
    """Processes still alive that this test's runs started: one of their uids, or a descendant of this process."""
    alive = []
    for proc in psutil.process_iter(["uids", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and proc.info["uids"].real in uids:
                alive.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    watcher = cgroups._watcher.pid if cgroups._watcher else None  # lives as long as this process, by design
    alive += [p for p in psutil.Process().children(recursive=True) if _running(p) and p.pid != watcher]
    return alive


def _running(proc: psutil.Process) -> bool:
    """Running and not a zombie; a process found a moment ago that is gone by now counts as gone."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(autouse=True)
def nothing_left_running(monkeypatch: pytest.MonkeyPatch):
    """Every test ends with no sandboxed process alive (the runner itself waits for the namespace to go).

    The uids this test's runs get are recorded (other workers on the host may be running sandboxes too). Warm
    zygotes that earlier tests of this process left running (as a worker keeps them) are stopped first.
    """
    warm.close_all()
    uids: set[int] = set()
    fresh_uid = bwrap.fresh_uid

    def recording_fresh_uid() -> int:
        uid = fresh_uid()
        uids.add(uid)
        return uid

    monkeypatch.setattr(bwrap, "fresh_uid", recording_fresh_uid)
    yield
    assert _sandboxed_processes(uids) == []


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    path = tmp_path / "tree"
    path.mkdir()
    return path


def python(code: str) -> list[str]:
    return ["python", "-c", textwrap.dedent(code)]


def test_honest_command_runs_in_the_tree_with_its_output(tree: Path) -> None:
    (tree / "data.txt").write_text("hello")
    result = sandbox.run(python("print(open('data.txt').read())"), tree=tree, limits=QUICK)
    assert (result.returncode, result.output, result.sandbox) == (0, "hello\n", "bwrap")
    assert not result.timed_out and not result.truncated and result.resource_limit is None


def test_output_holding_nul_and_broken_utf8_comes_back_storable(tree: Path) -> None:
    """The command's output is the patch's to write, and ends up in stored evidence: PostgreSQL refuses NUL."""
    code = "import sys; sys.stdout.buffer.write(b'a\\x00b \\xed\\xa0\\x80 c\\n')"
    result = sandbox.run(python(code), tree=tree, limits=QUICK)
    assert result.returncode == 0, result.output
    assert result.output == "a\\x00b \ufffd\ufffd\ufffd c\n"
    assert unstorable(result.output) is None


def test_command_writes_to_tree_and_report_dir_only(tree: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    report.mkdir()
    code = """
        import os
        open("made-in-tree.txt", "w").write("1")
        open("{report_dir}/junit.xml", "w").write("2")
        for target in ("/usr/evil", "/etc/evil", "/evil", "/sandbox/env/evil", "/sandbox/evil"):
            try:
                open(target, "w").write("x")
                print("WROTE", target)
            except OSError as exc:
                print("refused", target, type(exc).__name__)
    """
    env = tmp_path / "env"
    env.mkdir()
    result = sandbox.run(python(code), tree=tree, report_dir=report, env_dir=env, limits=QUICK)
    assert "WROTE" not in result.output
    assert result.output.count("refused") == 5
    assert (tree / "made-in-tree.txt").read_text() == "1"
    assert (report / "junit.xml").read_text() == "2"
    assert list(env.iterdir()) == []
    assert not Path("/evil").exists()


def test_fork_bomb_is_stopped_by_the_process_limit(tree: Path) -> None:
    # First prove the process limit binds: a broken sandbox must fail here, not take the machine down.
    counter = """
        import os, time
        children = 0
        try:
            while children < 200:
                if os.fork() == 0:
                    time.sleep(5)
                    os._exit(0)
                children += 1
        except OSError as exc:
            print("stopped after", children, flush=True)
            raise
    """
    limits = RunLimits(wall_s=10, cpu_s=5, max_pids=16)
    probe = sandbox.run(python(counter), tree=tree, limits=limits)
    assert "stopped after" in probe.output, probe.output
    assert int(probe.output.split()[2]) < 16
    assert probe.resource_limit == "pids"

    bomb = """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """
    result = sandbox.run(python(bomb), tree=tree, limits=RunLimits(wall_s=2, cpu_s=5, max_pids=16))
    assert result.timed_out and result.returncode is None
    assert result.wall_s < 6


def test_memory_bomb_reports_the_memory_limit(tree: Path) -> None:
    result = sandbox.run(python("blocks = [bytearray(64 << 20) for _ in range(100)]"), tree=tree, limits=QUICK)
    assert result.returncode != 0
    assert result.resource_limit == "memory"


def test_infinite_loop_is_stopped_by_the_cpu_limit(tree: Path) -> None:
    limits = RunLimits(wall_s=20, cpu_s=1)
    result = sandbox.run(python("while True: pass"), tree=tree, limits=limits)
    assert result.resource_limit == "cpu"
    assert not result.timed_out
    assert 0.9 <= result.cpu_s < 3


def test_sleep_is_killed_by_the_wall_clock(tree: Path) -> None:
    started = time.monotonic()
    result = sandbox.run(["sleep", "600"], tree=tree, limits=RunLimits(wall_s=1))
    assert result.timed_out and result.returncode is None
    assert time.monotonic() - started < 5


def test_setsid_daemon_dies_with_the_sandbox(tree: Path) -> None:
    code = """
        import os, subprocess
        subprocess.Popen(["setsid", "sleep", "777"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        if os.fork() == 0:
            os.setsid()
            os.execvp("sleep", ["sleep", "778"])
        print("parent leaves")
    """
    result = sandbox.run(python(code), tree=tree, limits=QUICK)
    assert result.returncode == 0 and "parent leaves" in result.output
    sleepers = [
        p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] in (["sleep", "777"], ["sleep", "778"])
    ]
    assert sleepers == []


def test_gigabytes_of_output_are_capped_and_marked(tree: Path) -> None:
    limits = RunLimits(wall_s=3, output_bytes=1 << 20)
    rss_before = psutil.Process().memory_info().rss
    result = sandbox.run(["yes", "spam"], tree=tree, limits=limits)
    assert result.truncated
    assert len(result.output.encode()) == 1 << 20
    assert result.output.startswith("spam\nspam\n")
    assert psutil.Process().memory_info().rss - rss_before < 64 << 20


def test_file_size_limit_stops_a_huge_file(tree: Path) -> None:
    result = sandbox.run(python("open('big', 'wb').write(b'x' * (64 << 20))"), tree=tree, limits=QUICK)
    assert result.resource_limit == "file_size"
    assert (tree / "big").stat().st_size <= QUICK.file_size_bytes


def test_network_has_only_loopback_and_host_services_are_unreachable(tree: Path) -> None:
    code = """
        import os, socket
        print("interfaces", sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]))
        for port in (6379, 5432):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2)
                print("CONNECTED", port)
            except OSError as exc:
                print("refused", port, type(exc).__name__)
        for path in ("/run/postgresql/.s.PGSQL.5432", "/var/run/postgresql", "/run/redis", "/run", "/var/run"):
            print("exists" if os.path.exists(path) else "absent", path)
    """
    result = sandbox.run(python(code), tree=tree, limits=QUICK)
    assert "interfaces ['lo']" in result.output, result.output
    assert "CONNECTED" not in result.output
    assert result.output.count("refused") == 2
    assert "exists" not in result.output


def test_secrets_in_the_environment_and_in_other_processes_are_out_of_reach(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVIEWAPP_TEST_SECRET", "hunter2-do-not-leak")
    code = """
        import os
        print("env", "hunter2" in repr(dict(os.environ)))
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        leaked = False
        for pid in pids:
            try:
                leaked |= b"hunter2" in open(f"/proc/{pid}/environ", "rb").read()
            except OSError:
                pass
        print("proc", leaked, "visible pids", len(pids))
    """
    result = sandbox.run(python(code), tree=tree, limits=QUICK)
    assert "env False" in result.output
    assert "proc False" in result.output
    visible = int(result.output.split("visible pids")[1])
    assert visible < 10  # only the namespace's own processes, not the host's


def test_command_runs_as_an_unprivileged_user_without_capabilities(tree: Path) -> None:
    code = """
        import os
        print(os.getuid(), os.geteuid())
        print([l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1])
    """
    result = sandbox.run(python(code), tree=tree, limits=QUICK)
    uid, euid, caps = result.output.split()
    assert int(uid) >= bwrap.UID_BASE and uid == euid
    assert int(caps, 16) == 0


def test_task_environment_is_importable_read_only(tree: Path, tmp_path: Path) -> None:
    env = tmp_path / "env"
    (env / "taskdep").mkdir(parents=True)
    (env / "taskdep" / "__init__.py").write_text("VALUE = 42\n")
    result = sandbox.run(python("import taskdep; print(taskdep.VALUE)"), tree=tree, env_dir=env, limits=QUICK)
    assert result.output == "42\n"


def test_without_bubblewrap_scoring_is_refused_unless_allowed(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bwrap, "_bwrap_problem", lambda: "bwrap is not installed")
    with pytest.raises(bwrap.SandboxUnavailable, match="REVIEWAPP_ALLOW_UNSANDBOXED"):
        sandbox.run(["true"], tree=tree)
    result = sandbox.run(python("import os; print(os.getcwd())"), tree=tree, limits=QUICK, allow_unsandboxed=True)
    assert result.sandbox == "unsandboxed"
    assert result.output.strip() == str(tree.resolve())
    limited = sandbox.run(python("while True: pass"), tree=tree, limits=RunLimits(cpu_s=1), allow_unsandboxed=True)
    assert limited.resource_limit == "cpu"
    slept = sandbox.run(["sleep", "600"], tree=tree, limits=RunLimits(wall_s=1), allow_unsandboxed=True)
    assert slept.timed_out


def test_sandbox_mode_names_the_mode() -> None:
    assert bwrap.sandbox_mode(False) == "bwrap"


def test_a_worker_killed_with_sigkill_leaves_no_sandbox_behind(tmp_path):
    import signal
    import subprocess
    import sys

    tree = tmp_path / "tree"
    tree.mkdir()
    script = (
        "from pathlib import Path\nfrom scoring.core.sandbox import process as sandbox\n"
        "from scoring.core.types import RunLimits\n"
        f"sandbox.run(['sleep', '779'], tree=Path({str(tree)!r}), limits=RunLimits(wall_s=60, cpu_s=60))\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[3])

    def ours() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if cmdline[-2:] == ["sleep", "779"] or any(str(tree) in part for part in cmdline):
                found.append(proc)
        return [p for p in found if p.pid != worker.pid and _running(p)]

    deadline = time.monotonic() + 20
    while not any(p.info["cmdline"][-2:] == ["sleep", "779"] for p in ours()):
        assert time.monotonic() < deadline, "the sandboxed sleep never started"
        time.sleep(0.1)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    deadline = time.monotonic() + 10
    while ours():
        assert time.monotonic() < deadline, f"left running: {[p.info['cmdline'] for p in ours()]}"
        time.sleep(0.1)
