"""Sandboxed pytest runs whose verdict the tree's code cannot write: the correctness critic's test runner.

One run (`run_pytest`) is one pytest process on a scratch copy of a tree, and what it yields is read only from
what that process could not take back or invent at its end:

- **Outcomes are streamed as they happen.** The harness's plugin (harness_plugin.py, loaded with `-p` before any
  code of the tree) writes each test phase's outcome to a named pipe the harness opened before the run and reads
  while it goes on. After the session's last outcome the plugin ends the process with `os._exit`: no exit hook,
  finalizer or `__del__` runs after the verdict, and anything written after "done" is ignored. A test whose
  outcome never arrived counts as failing. Records carry a per-run nonce and a sequence number: a record with
  another nonce, a gap, or two outcomes for one test phase are signs of forgery (`tamper`).
- **The JUnit report is only a second opinion.** pytest still writes one; when it disagrees with the stream, a
  serializer or the file was bent: `tamper`.
- **Canaries** (CANARIES per run) are copies of real tests, named like them, placed beside them, that call the
  real test and then fail. A passing canary, a run that ends "done" without their outcomes, or a run claiming
  success is `tamper`.
- **pytest runs on a configuration the harness owns**: `-c` names a file the harness wrote from the BASE tree's
  pytest configuration (`harness_config`), so nothing the patch adds or edits (pytest.ini, tox.ini, setup.cfg,
  pyproject.toml, pytest.toml) can add options, plugins or hooks; plugin auto-loading is off.
- **Hidden tests leave no readable trace**: each hidden test file is laid in the tree as an EMPTY file with a
  random name; the plugin serves its source from memory (read from a bootstrap file it deletes before the tree's
  code runs). Test names are mapped back to the real paths here.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import secrets
import select
import shlex
import shutil
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from scoring.core.trees import read_regular_file, scratch_copy
from scoring.core.types import RunLimits, RunResult, ScoringContext

#: Outcomes in a run; only "passed" counts as passing.
PASSED = "passed"
MISSING = "missing"
#: Canaries per run (at least one per test module, up to 8): enough that code forcing "everything but one odd
#: test" to pass cannot guess them all, and forcing the tests of one file trips one.
CANARIES = 3
PLUGIN_SOURCE = Path(__file__).with_name("harness_plugin.py")
_STREAM_MAX_BYTES = 20 << 20
_REPORT_MAX_BYTES = 20 << 20
#: Free space in the workspace below which a run without a report is blamed on the disk, not on the patch.
_MIN_FREE_BYTES = 1 << 20
_TEST_FILE_PREFIX, _TEST_FILE_SUFFIX = "test_", "_test.py"
_HARNESS_OPTIONS = (
    "-p",
    "no:cacheprovider",
    "-o",
    "junit_family=xunit1",
    "-o",
    "console_output_style=classic",
    "--continue-on-collection-errors",
    "--maxfail=0",  # every test runs: a `-x` in the command would stop at a canary, at a different place each run
    "--tb=short",
)


@dataclass
class SuiteRun:
    """One suite's share of a pytest run: per-test outcomes (canaries excluded) and how the run ended.

    `finished`: the stream reached the session's end. `tamper`: signs of forgery found while reading the run.
    `canary`: "passed" if any canary passed, "failed" if all ran and failed, MISSING otherwise.
    """

    tests: dict[str, str] = field(default_factory=dict)
    excerpts: dict[str, str] = field(default_factory=dict)
    canary: str = MISSING
    returncode: int | None = None
    exitstatus: int | None = None
    timed_out: bool = False
    resource_limit: str | None = None
    finished: bool = False
    planted: int = 0
    tamper: list[str] = field(default_factory=list)
    output_tail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "tests": self.tests,
            "canary": self.canary,
            "returncode": self.returncode,
            "exitstatus": self.exitstatus,
            "timed_out": self.timed_out,
            "resource_limit": self.resource_limit,
            "finished": self.finished,
            "planted": self.planted,
            "tamper": self.tamper,
            "output_tail": self.output_tail,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SuiteRun:
        return cls(**{key: data[key] for key in cls().to_json()})

    def broken_reason(self) -> str | None:
        """Why this run cannot serve as the base reference (None when it can)."""
        if self.timed_out:
            return "the tests timed out on the base tree"
        if self.resource_limit:
            return f"the tests hit the {self.resource_limit} limit on the base tree"
        if not self.finished:
            # No output quoted: the run held the hidden tests, and a shared task's rationale reaches other clients.
            return f"pytest did not finish on the base tree (exit status {self.returncode})"
        if not self.tests:
            return "no test was collected on the base tree"
        return None


@dataclass(frozen=True)
class HiddenLayout:
    """Where each hidden file lies in a run's tree: test files under random names, empty; sources in memory."""

    stub_of: dict[str, str]  # real relative path -> the path of its empty stand-in in the tree
    sources: dict[str, str]  # stand-in path -> source (Python files only)

    def real_path_of_nodeid(self, nodeid: str) -> str:
        """`nodeid` with a stand-in's path replaced by the real hidden file's."""
        path, sep, rest = nodeid.partition("::")
        for real, stub in self.stub_of.items():
            if path == stub:
                return f"{real}{sep}{rest}"
        return nodeid


def lay_hidden(hidden: Path | None, tree: Path) -> HiddenLayout:
    """Overlay the hidden tests on `tree`: Python files as empty stand-ins (test files under random names) whose
    source the plugin serves from memory, other files as they are (data files the tests open).

    A hidden file replaces a visible one of the same path.
    """
    stub_of: dict[str, str] = {}
    sources: dict[str, str] = {}
    if hidden is None:
        return HiddenLayout(stub_of, sources)
    for source in sorted(hidden.rglob("*")):
        rel = source.relative_to(hidden).as_posix()
        target = tree / rel
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        if not source.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        if not rel.endswith(".py"):
            shutil.copyfile(source, target)
            continue
        stub = _stub_name(rel, tree)
        (tree / stub).write_bytes(b"")
        stub_of[rel] = stub
        sources[stub] = source.read_text(errors="replace")
    return HiddenLayout(stub_of, sources)


def _stub_name(rel: str, tree: Path) -> str:
    """A random name for a hidden test file that pytest still collects (test_*.py or *_test.py); other modules
    keep their names, since tests import them by name."""
    path = PurePosixPath(rel)
    for _ in range(100):
        token = secrets.token_hex(5)
        if path.name.startswith(_TEST_FILE_PREFIX):
            name = f"{_TEST_FILE_PREFIX}{token}.py"
        elif path.name.endswith(_TEST_FILE_SUFFIX):
            name = f"{token}{_TEST_FILE_SUFFIX}"
        else:
            return rel
        candidate = (path.parent / name).as_posix()
        if not (tree / candidate).exists():
            return candidate
    return rel


@functools.lru_cache(maxsize=256)
def harness_config(base: Path, args: tuple[str, ...]) -> tuple[str, str, str]:
    """(relative folder, file suffix, text) of the pytest configuration the harness owns, from the BASE tree.

    pytest's own discovery (`locate_config`) finds the base's configuration for the command's paths, as a plain
    run of the base would; its values are written to a harness file in the same folder (so relative paths in it
    mean the same), and the run names it with `-c`. Returns the folder relative to the tree and the file's text;
    a base without configuration gets an empty one, which also stops pytest from looking further.
    """
    from _pytest.config.findpaths import locate_config
    from _pytest.outcomes import Failed

    paths = [base / a.split("::", 1)[0] for a in args if not a.startswith("-")]
    try:
        rootdir, _inipath, config, _ = locate_config(base, [p for p in paths if p.exists()] or [base])
    except (Exception, Failed):  # pytest refuses the base configuration: the base run itself will say how
        rootdir, config = None, {}
    folder = "."
    if rootdir is None or not Path(rootdir).resolve().is_relative_to(base.resolve()):
        # pytest looks up past the tree's root; in the sandbox there is nothing above it, so neither is here.
        rootdir, config = None, {}
    else:
        folder = Path(rootdir).resolve().relative_to(base.resolve()).as_posix()
    lines = ["[pytest]"]
    if any(getattr(value, "mode", "ini") == "toml" for value in config.values()):
        lines += [f"{key} = {_toml_value(value.value)}" for key, value in config.items()]
        return folder, ".toml", "\n".join(lines) + "\n"
    for key, value in config.items():
        raw = getattr(value, "value", value)
        text = "\n".join(map(str, raw)) if isinstance(raw, list) else str(raw)
        lines.append(f"{key} =" + "".join(f"\n    {line}" for line in text.splitlines()))
    return folder, ".ini", "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    """A TOML literal for a configuration value (strings, numbers, booleans, lists of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def run_pytest(
    ctx: ScoringContext,
    source: Path,
    command: str,
    *,
    hidden: bool,
    suites: tuple[str, ...],
    suite_of: Callable[[str], tuple[str, ...]],
    hidden_args: Callable[[HiddenLayout], list[str]] | None = None,
) -> dict[str, SuiteRun]:
    """One sandboxed pytest run of `command` on a scratch copy of `source`, hidden tests laid when `hidden`,
    canaries added; the outcome stream read into one SuiteRun per suite.

    `hidden_args(layout)` gives extra pytest arguments naming the hidden stand-ins (combined runs, the default
    hidden command); `suite_of` maps a test's real file to the suites it belongs to.
    """
    with scratch_copy(source, work_root=ctx.settings.work_root, prefix="tests-") as tree:
        layout = lay_hidden(ctx.hidden_dir if hidden else None, tree)
        argv = _as_python_module(shlex.split(command))
        argv = [*_with_stubs(argv, layout), *(hidden_args(layout) if hidden_args else [])]
        token = secrets.token_hex(8)
        # Only the paths the base has decide its configuration (and keep the cache's key stable across runs).
        base_paths = tuple(a for a in argv[3:] if not a.startswith("-") and (ctx.base_dir / a.split("::")[0]).exists())
        folder, suffix, config_text = harness_config(ctx.base_dir, base_paths)
        config_name = f".reviewapp-{token}{suffix}"
        (tree / folder / config_name).write_text(config_text)
        shutil.copyfile(PLUGIN_SOURCE, tree / f"_harness_{token}.py")
        report = tree.parent / "report"
        report.mkdir()
        nonce = secrets.token_hex(16)
        aliases = {real: stub for real, stub in layout.stub_of.items() if real != stub}
        boot = {"nonce": nonce, "canaries": CANARIES, "hidden": layout.sources, "aliases": aliases}
        (report / "boot.json").write_text(json.dumps(boot))
        os.mkfifo(report / "stream", 0o600)
        full = _pytest_argv(
            argv,
            plugins=[f"_harness_{token}", *_env_plugins(ctx.env_dir)],
            config=(PurePosixPath(folder) / config_name).as_posix(),
        )
        budget = float(getattr(ctx.spec, "timeout_s", 60)) * len(suites)
        limits = RunLimits(wall_s=budget, cpu_s=budget, output_bytes=ctx.settings.output_bytes)
        with _StreamReader(report / "stream") as stream:
            result = ctx.run(full, tree=tree, report_dir=report, env_dir=ctx.env_dir, limits=limits)
        runs = read_runs(
            stream.data, report / "junit.xml", result, nonce, layout, suites=suites, suite_of=suite_of, folder=folder
        )
        if not any(run.finished for run in runs.values()):
            _refuse_full_disk(tree)
        return runs


def _with_stubs(argv: list[str], layout: HiddenLayout) -> list[str]:
    """Arguments naming a hidden file name its stand-in instead (a node id keeps its `::` part)."""
    out = []
    for arg in argv:
        path, sep, rest = arg.partition("::")
        stub = layout.stub_of.get(path.removeprefix("./"))
        out.append(f"{stub}{sep}{rest}" if stub else arg)
    return out


class _StreamReader:
    """Reads the outcome stream (a named pipe) in a thread while the run goes on, up to a size cap.

    The harness holds a write end while the run goes on, so the pipe cannot report end-of-file before the run
    opened it. When the run is over (the context exits, every process of the sandbox is gone) that end is closed:
    the reader drains what is left, sees end-of-file and stops at once.
    """

    def __init__(self, path: Path) -> None:
        self.read_fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.hold_fd: int | None = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        self.chunks: list[bytes] = []
        self.size = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, name="outcome-stream", daemon=True)

    def __enter__(self) -> _StreamReader:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.hold_fd is not None:
            os.close(self.hold_fd)
            self.hold_fd = None
        self.thread.join(timeout=5)
        self.stop.set()  # something outside the run still holds the pipe: what was read is what counts
        self.thread.join(timeout=1)
        os.close(self.read_fd)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def _read(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select([self.read_fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(self.read_fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                return  # end of file: every writer is gone
            if self.size < _STREAM_MAX_BYTES:
                self.chunks.append(chunk[: _STREAM_MAX_BYTES - self.size])
            self.size += len(chunk)


def _refuse_full_disk(tree: Path) -> None:
    """Raise OSError(ENOSPC) when the workspace is (nearly) full after a run that did not finish.

    The missing outcomes then say nothing about the patch, so the stage must fail and be retried instead of
    counting every test as failing.
    """
    free = shutil.disk_usage(tree).free
    if free < _MIN_FREE_BYTES:
        raise OSError(errno.ENOSPC, f"No space left on device: {free} bytes free in the workspace, no test outcome")


def _as_python_module(argv: list[str]) -> list[str]:
    """The spec's pytest command as `python -m pytest ...` (so the tree is importable, as in a plain run)."""
    if argv[:1] == ["pytest"]:
        return ["python", "-m", "pytest", *argv[1:]]
    if argv[:1] == ["python3"]:
        return ["python", *argv[1:]]
    return argv


def _pytest_argv(argv: list[str], *, plugins: Sequence[str], config: str) -> list[str]:
    """`argv` (as `python -m pytest`) with the harness's plugin first, its options and configuration last.

    pytest imports `-p` plugins in order, so the harness's plugin (plugins[0]) is loaded before any module the
    command names, while its bootstrap is still on disk; and for options given twice the last wins, so no option of
    the command (`-c`, `-x`, `--maxfail`, `-o`...) can override the harness's.
    """
    harness, *others = plugins
    return [
        "env",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1",  # a patch must not be able to register a plugin through metadata
        "REVIEWAPP_HARNESS={report_dir}/boot.json",
        *argv[:3],
        "-p",
        harness,
        *argv[3:],
        *[arg for name in others for arg in ("-p", name)],
        *_HARNESS_OPTIONS,
        "-c",
        config,
        "--junitxml={report_dir}/junit.xml",
    ]


def _env_plugins(env_dir: Path | None) -> list[str]:
    """The pytest plugins the task's own requirements declare (entry point group pytest11), loaded by name."""
    names: list[str] = []
    if env_dir is None:
        return names
    for entry_points in sorted(env_dir.glob("*.dist-info/entry_points.txt")):
        section = None
        for line in entry_points.read_text(errors="replace").splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[]")
            elif section == "pytest11" and "=" in line:
                names.append(line.split("=", 1)[0].strip())
    return names


def test_key(nodeid: str) -> str:
    """The key of a test in evidence, as pytest's JUnit report names it (its `mangle_test_address`):
    `dotted.module.Class::name[params]`, or the dotted module alone for a collection error. Parameters may hold
    `::` themselves, so they are set apart first."""
    address, bracket, params = nodeid.partition("[")
    names = address.split("::")
    names[0] = names[0].replace("/", ".")
    names[0] = names[0][: -len(".py")] if names[0].endswith(".py") else names[0]
    names[-1] += bracket + params
    return f"{'.'.join(names[:-1])}::{names[-1]}" if len(names) > 1 else names[0]


def read_runs(
    stream: bytes,
    report: Path,
    result: RunResult,
    nonce: str,
    layout: HiddenLayout,
    *,
    suites: tuple[str, ...],
    suite_of: Callable[[str], tuple[str, ...]],
    folder: str = ".",
) -> dict[str, SuiteRun]:
    """Fold the outcome stream into a SuiteRun per suite and check it against the JUnit report.

    A test passes when each of its phases that ran passed and its call ran; a failed setup or teardown is an
    error, a skip (xfail included) is skipped, as pytest's JUnit report says. Every suite keeps the run's
    canaries, exit status, limits and the signs of forgery. Node ids are relative to pytest's rootdir, the harness
    configuration's `folder`; they are named from the tree's root here. The reasons for `tamper` are fixed sentences:
    nothing the run wrote (a test's name, a message) reaches the rationale, which API clients read.
    """
    tamper: list[str] = []
    phases: dict[str, dict[str, tuple[str, str]]] = {}
    canaries: set[str] | None = None
    collect_errors: dict[str, str] = {}
    internal_errors: list[str] = []
    exitstatus: int | None = None
    expected_seq = 1
    truncated = len(stream) >= _STREAM_MAX_BYTES
    lines = stream.splitlines()
    if truncated and lines:
        lines = lines[:-1]  # the cap may have cut the last line: the run is unfinished, not forged
    for line in lines:
        record = _record(line)
        if record is None:
            tamper.append("The outcome stream holds a line the harness's plugin did not write.")
            break
        if record["nonce"] != nonce or record["seq"] != expected_seq:
            tamper.append("The outcome stream holds records the harness's plugin did not write (nonce or order).")
            break
        expected_seq += 1
        kind = record["k"]
        if kind == "done":
            exitstatus = record["exitstatus"]
            break  # whatever comes after the session's end decides nothing
        if kind == "canaries":
            canaries = {_tree_path(layout, folder, n) for n in record["nodeids"]}
        elif kind == "tamper":
            tamper.append(
                _PLUGIN_TAMPER.get(record["why"], "The plugin saw the test machinery changed during the run.")
            )
        elif kind == "internal_error":
            internal_errors.append(record["text"])
        elif kind == "collect_error":
            collect_errors[_tree_path(layout, folder, record["nodeid"])] = record["text"]
        elif kind == "test":
            nodeid = _tree_path(layout, folder, record["nodeid"])
            when, outcome = record["when"], record["outcome"]
            if record["sub"]:
                # A subtest (pytest's `subtests`, unittest's subTest) reports one call each; any failure fails it.
                previous = phases.setdefault(nodeid, {}).get("subtests", (PASSED, ""))
                if previous[0] == PASSED:
                    phases[nodeid]["subtests"] = (outcome, record["text"])
                continue
            if when in phases.setdefault(nodeid, {}):
                tamper.append("Two outcomes were streamed for one test phase.")
            phases[nodeid][when] = (outcome, record["text"])
    finished = exitstatus is not None and not truncated
    runs = {
        suite: SuiteRun(
            returncode=result.returncode,
            exitstatus=exitstatus,
            timed_out=result.timed_out,
            resource_limit=result.resource_limit,
            finished=finished,
            planted=len(canaries or ()),
            tamper=list(tamper),
            output_tail=result.output[-2000:],
        )
        for suite in suites
    }
    outcomes: dict[str, tuple[str, str]] = {nodeid: _fold(ph) for nodeid, ph in phases.items()}
    canary_outcomes = [outcomes.get(n, (MISSING, ""))[0] for n in canaries or ()]
    canary = (
        PASSED
        if PASSED in canary_outcomes
        else "failed"
        if canary_outcomes and MISSING not in canary_outcomes
        else MISSING
    )
    for run in runs.values():
        run.canary = canary
    for nodeid, text in collect_errors.items():
        outcomes.setdefault(nodeid, ("error", text))
    for nodeid, (outcome, text) in outcomes.items():
        if canaries and nodeid in canaries:
            continue
        key = test_key(nodeid)
        for suite in suite_of(nodeid.split("::", 1)[0]):
            run = runs[suite]
            if run.tests.get(key, PASSED) == PASSED:  # a repeated name keeps its worst outcome
                run.tests[key] = outcome
                if text:
                    run.excerpts[key] = text
    for text in internal_errors[:1]:  # pytest itself failed: an error in every suite, as its JUnit report says
        for run in runs.values():
            run.tests.setdefault("pytest::internal", "error")
            run.excerpts.setdefault("pytest::internal", text)
    if finished:
        disagreement = _report_disagrees(report, outcomes, canaries or set(), layout, suites, folder)
        if disagreement:
            for run in runs.values():
                run.tamper.append(disagreement)
    return runs


#: The fixed sentences for what the plugin saw (the stream's own words never reach a rationale).
_PLUGIN_TAMPER = {
    "conftest": "The plugin saw a conftest.py written or changed while the tests ran.",
    "other": "The plugin saw the test machinery changed during the run.",
}
_RECORD_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "done": {"exitstatus": int},
    "canaries": {"nodeids": list},
    "tamper": {"why": str},
    "internal_error": {"text": str},
    "collect_error": {"nodeid": str, "text": str},
    "test": {"nodeid": str, "when": str, "outcome": str, "text": str, "sub": bool},
}


def _record(line: bytes) -> dict[str, Any] | None:
    """One stream record with every field of its kind and of the right type; None for anything else."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("seq"), int)
        or not isinstance(record.get("nonce"), str)
    ):
        return None
    fields = _RECORD_FIELDS.get(record.get("k"))  # type: ignore[arg-type]  # a record of any shape: an unknown kind finds no fields
    if fields is None or any(not isinstance(record.get(name), kind) for name, kind in fields.items()):
        return None
    if record["k"] == "canaries" and not all(isinstance(n, str) for n in record["nodeids"]):
        return None
    return record


def _tree_path(layout: HiddenLayout, folder: str, nodeid: str) -> str:
    """A node id named from the tree's root (pytest names it from its rootdir, `folder`), hidden stand-ins renamed."""
    if folder not in ("", "."):
        nodeid = f"{folder.rstrip('/')}/{nodeid}"
    return layout.real_path_of_nodeid(nodeid)


def _fold(phases: Mapping[str, tuple[str, str]]) -> tuple[str, str]:
    """One test's outcome from its phases, as the JUnit report would give it."""
    for when in ("setup", "call", "subtests", "teardown"):
        outcome, text = phases.get(when, (None, ""))
        if outcome == "failed":
            return ("error" if when in ("setup", "teardown") else "failed"), text
    for when in ("setup", "call"):
        outcome, text = phases.get(when, (None, ""))
        if outcome == "skipped":
            return "skipped", text
    if phases.get("call", ("",))[0] == PASSED:
        return PASSED, ""
    return MISSING, ""


def _report_disagrees(
    report: Path,
    outcomes: Mapping[str, tuple[str, str]],
    canaries: set[str],
    layout: HiddenLayout,
    suites: tuple[str, ...],
    folder: str,
) -> str | None:
    """Why pytest's JUnit report contradicts the streamed outcomes (None when they agree on what passed).

    The report lies in a folder the run could write: it is read without following links, only if it is a regular
    file, and only up to its size cap, so a run cannot make the worker read a host file or wait on a pipe.
    """
    data = read_regular_file(report, _REPORT_MAX_BYTES * len(suites))
    if data is None:
        return "The run finished but its JUnit report is missing, oversized or not a plain file: it was tampered with."
    try:
        root = ET.fromstring(data)  # noqa: S314 - size-capped; a DTD or an entity gives a ParseError, not an expansion
    except (ET.ParseError, ValueError, RecursionError):
        return "The run finished but its JUnit report does not parse: it was rewritten."
    streamed = {test_key(n) for n, (o, _) in outcomes.items() if o == PASSED and n not in canaries}
    prefix = "" if folder in ("", ".") else folder.strip("/").replace("/", ".") + "."
    reported = set()
    for case in root.iter("testcase"):
        if case.find("failure") is None and case.find("error") is None and case.find("skipped") is None:
            classname, name = case.get("classname"), case.get("name", "")
            key = f"{prefix}{classname}::{name}" if classname else f"{prefix}{name}"
            reported.add(_real_key(key, layout))
    reported -= {test_key(n) for n in canaries}
    if reported != streamed:
        return (
            f"The JUnit report disagrees with the outcomes streamed as they happened on {len(reported ^ streamed)} "
            "test(s): the report was forged."
        )
    return None


def _real_key(key: str, layout: HiddenLayout) -> str:
    """A JUnit key naming a hidden stand-in, renamed to the real hidden file."""
    for real, stub in layout.stub_of.items():
        stub_mod, real_mod = test_key(stub), test_key(real)
        if key == stub_mod or key.startswith(stub_mod + "."):
            return real_mod + key[len(stub_mod) :]
        if key.startswith(stub_mod + "::"):
            return real_mod + key[len(stub_mod) :]
    return key
