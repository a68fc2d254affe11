"""Warm test runs (pytest forked from a zygote in bubblewrap) against hostile tests: as isolated as a cold run.

Each hostile behaviour is a test file run by `python -m pytest` through `sandbox.run(..., warm=True)`; the
cross-run tests check what a warm zygote could leak from one run to the next.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from scoring.core import pipeline
from scoring.core.critics.correctness.critic import CorrectnessCritic
from scoring.core.intake.diffcheck import parse_diff
from scoring.core.sandbox import bwrap, warm
from scoring.core.sandbox import process as sandbox
from scoring.core.types import RunLimits, RunResult
from tests.scoring.core.fixtures import gcd_task

QUICK = RunLimits(wall_s=20, cpu_s=10, memory_bytes=1 << 30, max_pids=32, file_size_bytes=8 << 20)
PYTEST = ["env", "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1", "python", "-m", "pytest", "-q", "-p", "no:cacheprovider"]


@pytest.fixture(autouse=True)
def fresh_zygotes() -> Iterator[None]:
    """Each test starts without zygotes and stops the ones it started; none of their processes outlives it."""
    warm.close_all()
    warm.stats.clear()
    yield
    zygotes = list(warm._zygotes.values())
    warm.close_all()
    for zygote in zygotes:
        assert zygote.process.poll() is not None


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def make_run(runs: Path, name: str, test_code: str) -> tuple[Path, Path]:
    """A run folder as scratch_copy makes one: runs/<name>/tree with a test file, and runs/<name>/report."""
    tree = runs / name / "tree"
    tree.mkdir(parents=True)
    (runs / name / "report").mkdir()
    (tree / "test_probe.py").write_text(textwrap.dedent(test_code))
    return tree, runs / name / "report"


def run_probe(runs: Path, name: str, test_code: str, *, limits: RunLimits = QUICK, warm_run: bool = True) -> RunResult:
    """Run the test file through sandbox.run; a warm run must really have run warm (no silent cold fallback)."""
    tree, report = make_run(runs, name, test_code)
    argv = [*PYTEST, "test_probe.py", "--junitxml={report_dir}/junit.xml"]
    before = warm.stats["warm"]
    result = sandbox.run(argv, tree=tree, report_dir=report, limits=limits, warm=warm_run)
    assert warm.stats["warm"] == before + warm_run, dict(warm.stats)
    return result


def outcomes(runs: Path, name: str) -> dict[str, str]:
    root = ET.parse(runs / name / "report" / "junit.xml").getroot()  # noqa: S314 - our own test's report
    found = {}
    for case in root.iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        found[case.get("name")] = "failed" if failed else "passed"
    return found


def zygote_pids() -> set[int]:
    return {zygote.process.pid for zygote in warm._zygotes.values()}


def test_warm_run_matches_a_cold_run(runs: Path) -> None:
    code = """
        def test_passes():
            assert 1 + 1 == 2

        def test_fails():
            assert [1, 2] == [1, 3]
    """
    cold = run_probe(runs, "cold", code, warm_run=False)
    hot = run_probe(runs, "warm", code)
    assert zygote_pids(), "the warm run did not use a zygote"
    assert (hot.returncode, hot.sandbox, hot.timed_out, hot.resource_limit) == (1, "bwrap", False, None)
    assert (cold.returncode, cold.sandbox) == (hot.returncode, hot.sandbox)
    assert outcomes(runs, "warm") == outcomes(runs, "cold") == {"test_passes": "passed", "test_fails": "failed"}
    assert "1 failed, 1 passed" in hot.output and "assert [1, 2] == [1, 3]" in hot.output
    assert 0 < hot.cpu_s < 10


def test_a_prestarted_zygote_serves_the_first_run(runs: Path) -> None:
    runs.mkdir()
    assert warm.prestart(runs)
    started = zygote_pids()
    assert len(started) == 1
    assert run_probe(runs, "first", "def test_one():\n    pass\n").returncode == 0
    assert zygote_pids() == started


def test_second_run_reuses_the_zygote(runs: Path) -> None:
    run_probe(runs, "one", "def test_one():\n    pass\n")
    first = zygote_pids()
    result = run_probe(runs, "two", "def test_two():\n    pass\n")
    assert result.returncode == 0
    assert zygote_pids() == first and len(first) == 1


def test_a_warm_run_starts_with_the_zygote_s_objects_frozen(runs: Path) -> None:
    """Frozen, the zygote's objects are skipped by the run's garbage collections, which would otherwise copy every
    page they live on into the run: the difference between a warm run of ~90 ms and one of ~130 ms."""
    code = """
        import gc

        def test_frozen():
            assert gc.get_freeze_count() > 10_000
    """
    assert run_probe(runs, "frozen", code).returncode == 0
    assert outcomes(runs, "frozen") == {"test_frozen": "passed"}


def test_a_warm_run_sees_the_same_world_as_a_cold_one(runs: Path) -> None:
    code = """
        import json, os, sys

        def open_files():
            found = {}
            for fd in os.listdir("/proc/self/fd"):
                try:
                    found[fd] = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:  # the descriptor listdir itself used, closed by now
                    pass
            return found

        def test_report():
            status = dict(line.split(":", 1) for line in open("/proc/self/status"))
            facts = {
                "cwd": os.getcwd(),
                "path0": sys.path[0],
                "uid": os.getuid(),
                "caps": {k: int(v, 16) for k, v in status.items() if k.startswith("Cap")},
                "nnp": status["NoNewPrivs"].strip(),
                "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
                "runs": os.listdir("/sandbox/runs") if os.path.isdir("/sandbox/runs") else None,
                "fds": open_files(),
                "sockets": [fd for fd, target in open_files().items() if target.startswith("socket:")],
                "interfaces": sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]),
                "env": sorted(os.environ),
                "tmp": os.listdir("/tmp"),
            }
            open("facts.json", "w").write(json.dumps(facts))
    """
    facts = {}
    for mode in ("cold", "warm"):
        result = run_probe(runs, mode, code, warm_run=mode == "warm")
        assert result.returncode == 0, result.output
        facts[mode] = json.loads((runs / mode / "tree" / "facts.json").read_text())
    hot, cold = facts["warm"], facts["cold"]
    assert hot["cwd"] == hot["path0"] == cold["cwd"] == "/sandbox/tree"
    assert hot["uid"] >= bwrap.UID_BASE and hot["uid"] != cold["uid"]
    assert set(hot["caps"].values()) == {0}, hot["caps"]
    assert hot["nnp"] == "1"
    assert hot["runs"] == [], "a run must not see the other runs' folders"
    assert max(hot["pids"]) < 10, hot["pids"]  # its own PID namespace: no zygote, no host process
    assert hot["sockets"] == [] == cold["sockets"]
    assert len(hot["fds"]) <= len(cold["fds"]), (hot["fds"], cold["fds"])  # pytest's own, nothing inherited
    assert hot["interfaces"] == ["lo"]
    shell_only = {"SHLVL", "_", "PWD", "OLDPWD"}  # what bash in front of a cold run adds
    assert set(hot["env"]) - shell_only == set(cold["env"]) - shell_only
    assert hot["tmp"] == cold["tmp"]  # empty, but for the worker's Python when it lives below /tmp


def test_nothing_of_one_run_reaches_the_next(runs: Path) -> None:
    leaver = """
        import os, subprocess, time

        def test_leave_things_behind():
            open("/tmp/left-over", "w").write("secret of run one")
            open("/dev/shm/left-over", "w").write("secret of run one")
            subprocess.Popen(["setsid", "sleep", "787"], start_new_session=True)
            if os.fork() == 0:
                os.setsid()
                time.sleep(0.5)  # outlive the run, then try to write into whatever run comes next
                for root, dirs, files in os.walk("/sandbox"):
                    for name in dirs:
                        try:
                            open(os.path.join(root, name, "INJECTED"), "w").write("x")
                        except OSError:
                            pass
                os._exit(0)
    """
    first = run_probe(runs, "one", leaver)
    assert first.returncode == 0, first.output
    time.sleep(1.0)
    checker = """
        import os

        def test_clean_world():
            assert not os.path.exists("/tmp/left-over")
            assert not os.path.exists("/dev/shm/left-over")
    """
    second = run_probe(runs, "two", checker)
    assert second.returncode == 0, second.output
    assert not any(path.name == "INJECTED" for path in (runs / "two").rglob("*"))
    assert [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "787"]] == []


def test_a_run_cannot_reach_the_zygote_or_its_socket(runs: Path) -> None:
    code = """
        import os, signal, socket

        def test_attack():
            import stat
            for fd in range(3, 4096):
                try:
                    mode = os.fstat(fd).st_mode
                except OSError:
                    continue
                assert not stat.S_ISSOCK(mode), f"a socket reached the run on fd {fd}"
                try:
                    socket.socket(fileno=fd).send(b'{"id": 1, "code": 0, "cpu_s": 0}')
                    raise AssertionError(f"sent a forged reply on fd {fd}")
                except OSError:
                    pass
            for pid in range(1, 200):
                if pid != os.getpid():
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
    """
    result = run_probe(runs, "attack", code)
    assert result.returncode == 0, result.output
    assert outcomes(runs, "attack") == {"test_attack": "passed"}
    after = run_probe(runs, "after", "def test_ok():\n    pass\n")
    assert after.returncode == 0


@pytest.mark.parametrize(
    ("name", "code", "expected"),
    [
        ("memory", "def test_bomb():\n    blocks = [bytearray(64 << 20) for _ in range(100)]\n", "memory"),
        ("cpu", "def test_spin():\n    while True:\n        pass\n", "cpu"),
        (
            "file_size",
            "def test_big():\n    open('big', 'wb').write(b'x' * (64 << 20))\n",
            "file_size",
        ),
    ],
)
def test_limits_bind_in_a_warm_run(runs: Path, name: str, code: str, expected: str) -> None:
    # CPU time binds only the spinning run: zeroing 768 MiB on a freshly booted host took over 2 s of CPU once.
    cpu_s = 2 if expected == "cpu" else 20
    limits = RunLimits(wall_s=30, cpu_s=cpu_s, memory_bytes=768 << 20, max_pids=32, file_size_bytes=8 << 20)
    result = run_probe(runs, name, code, limits=limits)
    assert zygote_pids(), "the run did not go warm"
    assert result.resource_limit == expected, result.output[-2000:]
    if expected == "memory":
        assert outcomes(runs, name) == {"test_bomb": "failed"}


def test_fork_bomb_is_stopped_by_the_process_limit(runs: Path) -> None:
    code = """
        import os, time

        def test_bomb():
            children = 0
            try:
                while children < 200:
                    if os.fork() == 0:
                        time.sleep(5)
                        os._exit(0)
                    children += 1
            except OSError:
                print("stopped after", children, flush=True)
                raise
    """
    result = run_probe(runs, "bomb", code, limits=RunLimits(wall_s=20, cpu_s=5, max_pids=16))
    assert result.resource_limit == "pids", result.output[-2000:]
    assert int(result.output.split("stopped after")[1].split()[0]) < 16


def test_the_wall_clock_kills_a_hung_run_and_the_next_run_gets_a_new_zygote(runs: Path) -> None:
    started = time.monotonic()
    hang = "import time\n\ndef test_hang():\n    time.sleep(600)\n"
    result = run_probe(runs, "hang", hang, limits=RunLimits(wall_s=2))
    assert result.timed_out and result.returncode is None
    assert time.monotonic() - started < 8
    assert zygote_pids() == set()
    after = run_probe(runs, "after", "def test_ok():\n    pass\n")
    assert after.returncode == 0 and zygote_pids()


def test_a_run_that_closes_its_output_and_hangs_is_killed(runs: Path) -> None:
    code = """
        import os, time

        def test_hide():
            os.closerange(0, 1024)  # pytest's capture keeps the real stdout in a spare descriptor
            time.sleep(600)
    """
    started = time.monotonic()
    result = run_probe(runs, "hide", code, limits=RunLimits(wall_s=30))
    assert result.returncode == -9
    assert time.monotonic() - started < 10


def test_early_exit_is_an_exit_not_a_pass(runs: Path) -> None:
    result = run_probe(runs, "exit", "import os\n\ndef test_leave():\n    os._exit(0)\n")
    assert result.returncode == 0
    assert not (runs / "exit" / "report" / "junit.xml").exists()
    die = "import os, signal\n\ndef test_die():\n    os.kill(os.getpid(), signal.SIGTERM)\n"
    signalled = run_probe(runs, "kill", die)
    assert signalled.returncode == -15


def test_a_dead_zygote_is_replaced(runs: Path) -> None:
    run_probe(runs, "one", "def test_one():\n    pass\n")
    (zygote,) = warm._zygotes.values()
    psutil.Process(zygote.process.pid).kill()
    zygote.process.wait(timeout=10)
    result = run_probe(runs, "two", "def test_two():\n    pass\n")
    assert result.returncode == 0
    assert zygote_pids() and zygote.process.pid not in zygote_pids()


# What a program sees of how it was started: compared between a cold and a warm run of the same command.
LOOK_AROUND = """\
import json, os, sys
main = sys.modules["__main__"]
print(json.dumps({
    "argv": sys.argv, "path0": sys.path[0], "cwd": os.getcwd(), "name": __name__,
    "file": getattr(main, "__file__", None), "spec": repr(getattr(getattr(main, "__spec__", None), "origin", None)),
    "package": getattr(main, "__package__", None), "loader": type(getattr(main, "__loader__", None)).__name__,
    "env": os.environ.get("SEEN"), "orig_argv": sys.orig_argv,
}))
"""


@pytest.mark.parametrize(
    "command",
    [
        ["python", "bench/look.py", "one", "two"],
        ["env", "SEEN=yes", "python", "bench/look.py"],
        ["python", "/sandbox/tree/bench/look.py"],
        ["python", "-c", LOOK_AROUND, "x"],
        ["python", "-m", "bench.look", "--flag"],
        ["python", "-P", "bench/look.py", "one"],
        ["python", "-P", "-c", LOOK_AROUND],
    ],
    ids=["script", "script-env", "absolute-script", "code", "module", "safe-path-script", "safe-path-code"],
)
def test_a_python_program_sees_the_same_start_warm_as_cold(tmp_path: Path, command: list[str]) -> None:
    seen = {}
    for mode in ("cold", "warm"):
        tree = tmp_path / "runs" / mode / "tree"
        (tree / "bench").mkdir(parents=True)
        (tree / "bench" / "__init__.py").write_text("")
        (tree / "bench" / "look.py").write_text(LOOK_AROUND)
        before = warm.stats["warm"]
        result = sandbox.run(command, tree=tree, limits=QUICK, warm=mode == "warm")
        assert result.returncode == 0, result.output
        assert warm.stats["warm"] == before + (mode == "warm"), dict(warm.stats)
        seen[mode] = json.loads(result.output.splitlines()[-1])
    assert seen["warm"] == seen["cold"]


def test_a_missing_script_fails_warm_as_it_does_cold(tmp_path: Path) -> None:
    answers = []
    for mode in ("cold", "warm"):
        tree = tmp_path / "runs" / mode / "tree"
        tree.mkdir(parents=True)
        result = sandbox.run(["python", "bench/none.py"], tree=tree, limits=QUICK, warm=mode == "warm")
        answers.append((result.returncode, "can't open file" in result.output))
    assert answers == [(2, True), (2, True)]


def test_commands_that_are_not_python_run_cold(tmp_path: Path) -> None:
    tree = tmp_path / "runs" / "x" / "tree"
    tree.mkdir(parents=True)
    result = sandbox.run(["sh", "-c", "echo cold"], tree=tree, limits=QUICK, warm=True)
    assert result.output == "cold\n"
    assert zygote_pids() == set()


def test_python_args_recognises_only_plain_python_commands() -> None:
    assert warm.python_args(["python", "-m", "pytest", "-q"]) == ({}, {"module": "pytest", "args": ["-q"]})
    assert warm.python_args(["env", "A=1", "B=x=y", "python", "-m", "pytest", "t.py"]) == (
        {"A": "1", "B": "x=y"},
        {"module": "pytest", "args": ["t.py"]},
    )
    assert warm.python_args(["python", "bench.py", "3"]) == ({}, {"path": "bench.py", "args": ["3"]})
    assert warm.python_args(["python", "-c", "pass"]) == ({}, {"code": "pass", "args": []})
    assert warm.python_args(["python", "-P", "t.py"]) == ({}, {"path": "t.py", "args": [], "safe_path": True})
    assert warm.python_args(["python", "-P"]) is None
    assert warm.python_args(["env", "python3", "-m", "pytest"]) is None
    assert warm.python_args(["bash", "-c", "python -m pytest"]) is None
    # Interpreter options change how Python starts: such a command runs cold.
    assert warm.python_args(["python", "-O", "bench.py"]) is None
    assert warm.python_args(["python", "-m"]) is None
    assert warm.python_args(["python"]) is None
    # Python reads these when it starts: a forked run cannot honour them, so such a command runs cold.
    assert warm.python_args(["env", "PYTHONPATH=src", "python", "-m", "pytest"]) is None
    assert warm.python_args(["env", "PYTHONHASHSEED=1", "python", "-m", "pytest"]) is None


def test_each_run_has_its_own_network(runs: Path) -> None:
    holder = """
        import socket

        def test_hold_a_port():
            server = socket.socket()
            server.bind(("127.0.0.1", 8765))
            server.listen()
            client = socket.create_connection(("127.0.0.1", 8765))
            peer, _ = server.accept()
            peer.close()  # the side that closes first keeps the port in TIME_WAIT for a minute
            client.close()
            server.close()
    """
    assert run_probe(runs, "one", holder).returncode == 0
    binder = """
        import socket

        def test_bind_the_same_port():
            sock = socket.socket()
            sock.bind(("127.0.0.1", 8765))
            sock.close()
    """
    second = run_probe(runs, "two", binder)
    assert second.returncode == 0, second.output


def test_a_task_environment_runs_warm_without_privileges(runs: Path, tmp_path: Path) -> None:
    env = tmp_path / "env"
    (env / "taskdep").mkdir(parents=True)
    (env / "taskdep" / "__init__.py").write_text("import os\nUID = os.getuid()\n")
    tree, report = make_run(runs, "dep", "import taskdep\n\ndef test_dep():\n    assert taskdep.UID > 0\n")
    argv = [*PYTEST, "test_probe.py", "--junitxml={report_dir}/junit.xml"]
    result = sandbox.run(argv, tree=tree, report_dir=report, env_dir=env, limits=QUICK, warm=True)
    assert result.returncode == 0, result.output
    assert warm.stats["warm"] == 1


@pytest.mark.parametrize("shipped", ["sitecustomize.py", "pluggy", "_pytest"])
def test_a_task_environment_that_would_shadow_the_zygote_runs_cold(runs: Path, tmp_path: Path, shipped: str) -> None:
    env = tmp_path / "env"
    env.mkdir()
    marker = "open('/sandbox/report/ran-as', 'w').write(str(__import__('os').getuid()))\n"
    if shipped.endswith(".py"):
        (env / shipped).write_text(marker)
    else:
        (env / shipped).mkdir()
        (env / shipped / "__init__.py").write_text(marker)
    tree, report = make_run(runs, "shadow", "def test_ok():\n    pass\n")
    argv = [*PYTEST, "test_probe.py", "--junitxml={report_dir}/junit.xml"]
    sandbox.run(argv, tree=tree, report_dir=report, env_dir=env, limits=QUICK, warm=True)
    assert warm.stats == {"cold": 1}
    ran_as = report / "ran-as"
    assert not ran_as.exists() or int(ran_as.read_text()) > 0  # never as root, in the zygote


def test_an_exception_in_the_worker_during_a_run_kills_the_run(runs: Path) -> None:
    import signal as signals

    tree, report = make_run(runs, "slow", "import time\n\ndef test_slow():\n    time.sleep(787)\n")
    argv = [*PYTEST, "test_probe.py"]

    def interrupt(signum, frame):
        raise TimeoutError("the stage's soft time limit")

    run_probe(runs, "warmup", "def test_ok():\n    pass\n")
    gone = list(warm._zygotes.values())
    previous = signals.signal(signals.SIGALRM, interrupt)
    signals.setitimer(signals.ITIMER_REAL, 1.5)
    try:
        with pytest.raises(TimeoutError):
            sandbox.run(argv, tree=tree, report_dir=report, limits=RunLimits(wall_s=60), warm=True)
    finally:
        signals.setitimer(signals.ITIMER_REAL, 0)
        signals.signal(signals.SIGALRM, previous)
    (zygote,) = [z for z in gone if z.dead]
    assert zygote.process.poll() is not None  # the run died with the zygote's sandbox (its PID namespace)
    assert zygote_pids() == set()
    after = run_probe(runs, "after", "def test_ok():\n    pass\n")
    assert after.returncode == 0


def test_a_zygote_lost_during_a_run_fails_the_stage_instead_of_rerunning_a_used_tree(runs: Path) -> None:
    import threading

    run_probe(runs, "warmup", "def test_ok():\n    pass\n")
    (zygote,) = warm._zygotes.values()
    killer = threading.Timer(1.0, lambda: psutil.Process(zygote.process.pid).kill())
    tree, report = make_run(runs, "victim", "import time\n\ndef test_slow():\n    time.sleep(30)\n")
    killer.start()
    with pytest.raises(warm.WarmRunLost):
        sandbox.run([*PYTEST, "test_probe.py"], tree=tree, report_dir=report, limits=QUICK, warm=True)
    killer.join()
    assert warm.stats["lost"] == 1


def test_a_python_installed_below_tmp_stays_visible_in_a_run(
    runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run gets a fresh /tmp; a worker whose venv lives below /tmp (a CI checkout there) must still see it.
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    (prefix / "below_tmp.py").write_text("WHERE = __file__\n")
    assert str(prefix).startswith("/tmp/")
    real = bwrap.python_prefixes()
    monkeypatch.setattr(bwrap, "python_prefixes", lambda: (*real, prefix))
    code = f"""
        import sys

        def test_import_from_below_tmp():
            sys.path.insert(0, {str(prefix)!r})
            import below_tmp
            assert below_tmp.WHERE.startswith({str(prefix)!r})

        def test_it_is_read_only():
            try:
                open({str(prefix / "new.txt")!r}, "w")
            except OSError:
                return
            raise AssertionError("the worker's Python is writable from a run")
    """
    result = run_probe(runs, "below", code)
    assert result.returncode == 0, result.output
    assert outcomes(runs, "below") == {"test_import_from_below_tmp": "passed", "test_it_is_read_only": "passed"}


@pytest.mark.parametrize("warm_tests", [True, False])
def test_the_pipeline_setting_decides_whether_tests_run_warm(tmp_path: Path, warm_tests: bool) -> None:
    spec, base, hidden, settings = gcd_task.task(tmp_path, warm_tests=warm_tests)
    outcome = pipeline.run_stage(
        critics=[CorrectnessCritic()],
        spec=spec,
        diff=parse_diff(gcd_task.fix_diff()),
        base_archive=base,
        hidden_archive=hidden,
        settings=settings,
    )
    assert outcome.results["correctness"].score == 1.0
    assert (warm.stats["warm"] > 0) is warm_tests, dict(warm.stats)


@pytest.mark.parametrize("mode", ["cold", "warm"])
def test_a_run_given_cpus_is_pinned_to_them(tmp_path: Path, mode: str) -> None:
    cpu = max(os.sched_getaffinity(0))
    tree = tmp_path / "runs" / mode / "tree"
    tree.mkdir(parents=True)
    code = "import os; print(sorted(os.sched_getaffinity(0)))"
    limits = RunLimits(wall_s=20, cpu_s=10, cpus=(cpu,))
    result = sandbox.run(["python", "-c", code], tree=tree, limits=limits, warm=mode == "warm")
    assert result.output.strip() == f"[{cpu}]", result.output
    assert warm.stats["warm"] == (mode == "warm")
