"""Correctness: the task's visible and hidden tests, on the base and on the patched tree (DESIGN.md, exactly).

How a run is trusted (docs/correctness.md has the full story):

- every run happens in the sandbox, in a scratch copy (never in the shared base or the patched tree itself);
- the visible and hidden suites share one pytest process when `combine_blocker` finds nothing in the spec, the
  hidden tests or the tree that one process could change; the report is split back by each test's file;
- pytest plugin auto-loading is off (the task's own requirements' plugins are loaded by name), the cache plugin
  is off, and per-test results come from a JUnit XML file the harness asks for in the report folder;
- the harness adds a randomly named canary test that must fail. The patched code runs in the same process as
  pytest and can write to the report folder, so the canary and the expected-test set are what make a forged or
  bent report visible: a passing canary, a report without it, or an exit status claiming success is `tamper`;
- added code that reaches into the test machinery is `suspicious` (see `suspicious_findings`).
"""

from __future__ import annotations

import ast
import contextlib
import errno
import json
import os
import secrets
import shlex
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from scoring.core import combine, discriminator
from scoring.core.critics.base import BaseCritic
from scoring.core.trees import scratch_copy
from scoring.core.types import CriticResult, RunLimits, RunResult, ScoringContext

#: Outcomes in a run; only "passed" counts as passing.
PASSED = "passed"
MISSING = "missing"
_REPORT_MAX_BYTES = 20 << 20
#: Free space in the workspace below which a run without a report is blamed on the disk, not on the patch.
_MIN_FREE_BYTES = 1 << 20
_EXCERPT_CHARS = 600
_BASE_FACTS_FILE = "correctness_base.json"
#: Base facts of a task whose suites run as one process: a file of their own, so that a patched tree that must
#: run its suites apart is graded against base runs made apart too.
_COMBINED_BASE_FACTS_FILE = "correctness_base_combined.json"
#: The suites of a task with hidden tests, in the order runs and evidence list them.
SUITES = ("visible", "hidden")
_HARNESS_OPTIONS = (
    "-p",
    "no:cacheprovider",
    "-o",
    "junit_family=xunit1",
    "-o",
    "console_output_style=classic",
    "--continue-on-collection-errors",
    "--tb=short",
)


@dataclass
class SuiteRun:
    """One pytest run: per-test outcomes (canary excluded), the canary's outcome, and how the run ended."""

    tests: dict[str, str] = field(default_factory=dict)
    excerpts: dict[str, str] = field(default_factory=dict)
    canary: str = MISSING
    returncode: int | None = None
    timed_out: bool = False
    resource_limit: str | None = None
    report_found: bool = False
    output_tail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "tests": self.tests,
            "canary": self.canary,
            "returncode": self.returncode,
            "timed_out": self.timed_out,
            "resource_limit": self.resource_limit,
            "report_found": self.report_found,
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
        if not self.report_found:
            return f"pytest wrote no report on the base tree (exit status {self.returncode})"
        if not self.tests:
            return "no test was collected on the base tree"
        return None


class CorrectnessCritic(BaseCritic):
    """Grades a patch by the task's tests, visible and hidden, against the base tree's results."""

    name = "correctness"
    label = "Correctness"
    default_weight = 0.4
    queue = "exec"

    def evaluate(self, ctx: ScoringContext) -> CriticResult:
        """Run the suites on the patched tree and grade them against the (cached) base facts."""
        steps = [f"Step: preparing the tree. {note}" for note in ctx.notes]
        combined, patched_blocker = choose_mode(ctx)
        base, cached = base_facts(ctx, combined=combined)
        broken = next(filter(None, (run.broken_reason() for run in base.values())), None)
        if broken is not None:
            steps.append(f"Step: base run. The task looks broken: {broken}. Correctness cannot be measured.")
            return CriticResult(self.name, None, 0.9, tuple(steps), {"task_broken": broken}, frozenset({"task_broken"}))
        steps.append(_base_step(base, cached))
        patched = run_suites(ctx, ctx.patched_dir, list(base), combined=combined)
        return discriminator.judge(ctx, grade(ctx, base, [patched], steps, runs_apart=patched_blocker))

    def heal(self, ctx: ScoringContext, previous: CriticResult, budget_s: float) -> CriticResult:
        """Re-run the patched suites to tell flaky tests from failing ones; flaky tests leave both sets.

        Only a failing test is a doubt that more runs can settle: when every test passed (the doubt is, say,
        suspicious code), re-running would cost time and change nothing.
        """
        if previous.score is None or "tamper" in previous.flags or not _any_failing(previous.evidence):
            return discriminator.heal(ctx, previous, budget_s)
        combined, patched_blocker = choose_mode(ctx)
        base, _ = base_facts(ctx, combined=combined)
        runs = [{suite: _suite_from_evidence(previous.evidence[suite]) for suite in base}]
        steps = list(previous.rationale)
        deadline = time.monotonic() + budget_s
        started = time.monotonic()
        for attempt in range(ctx.settings.flaky_reruns):
            remaining = deadline - time.monotonic()
            per_run = (time.monotonic() - started) / attempt if attempt else 0.0
            if remaining <= per_run:
                steps.append(f"Step: healing. Time budget spent after {attempt} re-run(s).")
                break
            runs.append(run_suites(ctx, ctx.patched_dir, list(base), combined=combined))
        reruns = len(runs) - 1
        if reruns == 0:
            return previous
        steps.append(f"Step: healing. Re-ran the tests {reruns} more time(s) to separate flaky from failing tests.")
        healed = grade(ctx, base, runs, steps, healed=True, runs_apart=patched_blocker)
        return discriminator.judge(ctx, healed, previous)


def base_facts(ctx: ScoringContext, *, combined: bool) -> tuple[dict[str, SuiteRun], bool]:
    """The base tree's suite results, computed once per task and run mode and cached; returns (facts, from cache).

    `combined` (from `choose_mode`) says how the patched runs they are compared with are made; each mode has its
    own cache file. Two processes may compute them at once; each writes a complete file and the last rename
    wins, so a reader never sees half a file.
    """
    path = ctx.task_cache_dir / (_COMBINED_BASE_FACTS_FILE if combined else _BASE_FACTS_FILE)
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        data = json.loads(path.read_text())
        return {suite: SuiteRun.from_json(run) for suite, run in data.items()}, True
    suites = list(SUITES if ctx.hidden_dir is not None else SUITES[:1])
    facts = run_suites(ctx, ctx.base_dir, suites, combined=combined)
    if not any(run.broken_reason() for run in facts.values()):
        ctx.task_cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".base-", dir=ctx.task_cache_dir)
        with os.fdopen(fd, "w") as handle:
            json.dump({suite: run.to_json() for suite, run in facts.items()}, handle)
        os.replace(tmp, path)
    return facts, False


def choose_mode(ctx: ScoringContext) -> tuple[bool, str | None]:
    """(True when both suites of this patch run as one pytest process, why not when only the patched tree forbids it).

    The spec, the hidden tests and the base tree decide it for the whole task, so the cached base facts and
    every patch agree. A patched tree is checked too, without trusting the workspace's reverts: if it would
    change the answer, its suites run apart and `base_facts(ctx, combined=False)` gives base runs made apart,
    so grading always compares runs of one kind.
    """
    if ctx.hidden_dir is None:
        return False, None
    hidden = combine.cached_tree_files(ctx.hidden_dir)
    if _tree_blocker(ctx, hidden, ctx.base_dir, combine.cached_tree_files(ctx.base_dir)) is not None:
        return False, None
    patched = _tree_blocker(ctx, hidden, ctx.patched_dir, combine.tree_files(ctx.patched_dir))
    return patched is None, patched


def _tree_blocker(ctx: ScoringContext, hidden_files: frozenset[str], tree: Path, files: frozenset[str]) -> str | None:
    """`combine_blocker` for the hidden tests overlaid on `tree`, whose files are `files`."""
    return combine.combine_blocker(
        test_command=ctx.spec.test_command,
        hidden_test_command=getattr(ctx.spec, "hidden_test_command", None),
        hidden_files=hidden_files,
        tree_files=files,
        addopts=combine.root_addopts(tree),
    )


def run_suites(ctx: ScoringContext, source: Path, suites: Sequence[str], *, combined: bool) -> dict[str, SuiteRun]:
    """Each of `suites` on a scratch copy of `source`: one pytest run for both when `combined`, else one each.

    The one function base facts, patched runs and healing all use, with `combined` from `choose_mode`.
    """
    if combined and tuple(suites) == SUITES:
        return run_combined(ctx, source)
    return {suite: run_suite(ctx, source, suite) for suite in suites}


def run_suite(ctx: ScoringContext, source: Path, suite: str) -> SuiteRun:
    """Run the visible or hidden suite on a scratch copy of `source`, with the canary, and read its report."""
    runs = _run_pytest(
        ctx, source, _suite_command(ctx, suite), overlay=suite == "hidden", suites=(suite,), suite_of=lambda _: (suite,)
    )
    return runs[suite]


def run_combined(ctx: ScoringContext, source: Path) -> dict[str, SuiteRun]:
    """Run both suites as one pytest process (the visible command plus the hidden test files) and split the report.

    Call only when `combine_blocker` allows it for `source`. A test belongs to the hidden suite when the `file` of
    its JUnit testcase (xunit1 writes it for tests and collection errors alike) is a hidden file, to the visible
    suite otherwise. A testcase without a usable `file` goes to both: pytest writes one only for a run-wide event
    (an internal error ends the whole run). Both suites keep the run's canary, exit status, timeout, limit and
    output; the run gets the wall-clock and CPU budgets of the two runs it replaces.
    """
    hidden = combine.cached_tree_files(ctx.hidden_dir)
    command = shlex.join([*shlex.split(ctx.spec.test_command), *combine.hidden_test_files(hidden)])

    def suite_of(file: str) -> tuple[str, ...]:
        path = PurePosixPath(file)
        if not file or path.is_absolute() or ".." in path.parts:
            return SUITES
        return ("hidden",) if path.as_posix() in hidden else ("visible",)

    return _run_pytest(ctx, source, command, overlay=True, suites=SUITES, suite_of=suite_of)


def _run_pytest(
    ctx: ScoringContext,
    source: Path,
    command: str,
    *,
    overlay: bool,
    suites: tuple[str, ...],
    suite_of: Callable[[str], tuple[str, ...]],
) -> dict[str, SuiteRun]:
    """One sandboxed pytest run of `command` on a scratch copy of `source` (hidden tests overlaid when `overlay`),
    with the canary; its report read into one SuiteRun per suite."""
    with scratch_copy(source, work_root=ctx.settings.work_root, prefix="tests-") as tree:
        if overlay:
            _overlay(ctx.hidden_dir, tree)
        token = secrets.token_hex(6)
        canary = f"test_canary_{token}"
        (tree / f"{canary}.py").write_text(f"def {canary}():\n    assert False, 'the harness canary must fail'\n")
        (tree / f"_harness_{token}.py").write_text(
            "import pathlib\n\n\ndef pytest_configure(config):\n"
            f"    config.args.append(str(pathlib.Path(__file__).with_name('{canary}.py')))\n"
        )
        report = tree.parent / "report"
        report.mkdir()
        argv = _pytest_argv(command, plugins=[f"_harness_{token}", *_env_plugins(ctx.env_dir)])
        budget = float(getattr(ctx.spec, "timeout_s", 60)) * len(suites)
        limits = RunLimits(wall_s=budget, cpu_s=budget, output_bytes=ctx.settings.output_bytes)
        result = ctx.run(argv, tree=tree, report_dir=report, env_dir=ctx.env_dir, limits=limits)
        runs = _read_runs(report / "junit.xml", result, canary, suites=suites, suite_of=suite_of)
        if not any(run.report_found for run in runs.values()):
            _refuse_full_disk(tree)
        return runs


def _refuse_full_disk(tree: Path) -> None:
    """Raise OSError(ENOSPC) when the workspace is (nearly) full after a run that left no report.

    The missing report then says nothing about the patch (pytest could not write it), so the stage must fail and
    be retried instead of counting every test as failing.
    """
    free = shutil.disk_usage(tree).free
    if free < _MIN_FREE_BYTES:
        raise OSError(errno.ENOSPC, f"No space left on device: {free} bytes free in the workspace, no test report")


def _suite_command(ctx: ScoringContext, suite: str) -> str:
    """The pytest command of a suite: the spec's, or for hidden tests by default pytest on the files they add."""
    if suite == "visible":
        return ctx.spec.test_command
    if getattr(ctx.spec, "hidden_test_command", None):
        return ctx.spec.hidden_test_command
    return shlex.join(
        ["python", "-m", "pytest", "-q", *combine.hidden_test_files(combine.cached_tree_files(ctx.hidden_dir))]
    )


def _pytest_argv(command: str, *, plugins: Iterable[str]) -> list[str]:
    """The spec's pytest command as `python -m pytest` (so the tree is importable) plus the harness options."""
    argv = shlex.split(command)
    if argv[:1] == ["pytest"]:
        argv = ["python", "-m", "pytest", *argv[1:]]
    elif argv[:1] == ["python3"]:
        argv = ["python", *argv[1:]]
    plugin_args = [arg for name in plugins for arg in ("-p", name)]
    return [
        "env",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1",  # a patch must not be able to register a plugin through metadata
        *argv,
        *plugin_args,
        *_HARNESS_OPTIONS,
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


def _overlay(hidden: Path | None, tree: Path) -> None:
    """Copy the hidden tests over the tree (a hidden file replaces a visible one of the same name)."""
    if hidden is None:
        return
    for source in hidden.rglob("*"):
        target = tree / source.relative_to(hidden)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                target.unlink()
            shutil.copyfile(source, target)


def _read_runs(
    report: Path,
    result: RunResult,
    canary: str,
    *,
    suites: tuple[str, ...],
    suite_of: Callable[[str], tuple[str, ...]],
) -> dict[str, SuiteRun]:
    """Turn a run and its JUnit report into a SuiteRun per suite; a missing or unreadable report means no results.

    `suite_of` maps a testcase's `file` attribute to the suites it belongs to. Every suite keeps the run's canary,
    exit status and limits. The report may be as large as the cap of each run it stands for.
    """
    runs = {
        suite: SuiteRun(
            returncode=result.returncode,
            timed_out=result.timed_out,
            resource_limit=result.resource_limit,
            output_tail=result.output[-2000:],
        )
        for suite in suites
    }
    try:
        if report.stat().st_size > _REPORT_MAX_BYTES * len(suites):
            return runs
        root = ET.parse(report).getroot()  # noqa: S314 - see the import
    except (OSError, ET.ParseError, ValueError):
        return runs
    for run in runs.values():
        run.report_found = True
    for case in root.iter("testcase"):
        name = case.get("name", "")
        key = f"{case.get('classname')}::{name}" if case.get("classname") else name
        outcome, excerpt = _outcome(case)
        if name == canary:
            for run in runs.values():
                run.canary = outcome
            continue
        for suite in suite_of(case.get("file") or ""):
            run = runs[suite]
            if run.tests.get(key, PASSED) == PASSED:  # a repeated name keeps its worst outcome
                run.tests[key] = outcome
                if excerpt:
                    run.excerpts[key] = excerpt
    return runs


def _outcome(case: ET.Element) -> tuple[str, str]:
    """('passed' | 'failed' | 'error' | 'skipped', an excerpt of the failure text)."""
    for tag in ("failure", "error", "skipped"):
        element = case.find(tag)
        if element is not None:
            text = (element.get("message") or "") + "\n" + (element.text or "")
            outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
            return outcome, text.strip()[:_EXCERPT_CHARS]
    return PASSED, ""


def _outcome_now(key: str, run: SuiteRun) -> str:
    """A base test's outcome in `run`. A base collection error (key without '::') stands for the module's tests."""
    if key in run.tests:
        return run.tests[key]
    if "::" not in key:
        module = [k for k in run.tests if k.split("::", 1)[0] == key or k.split("::", 1)[0].startswith(key + ".")]
        if module:
            return PASSED if all(run.tests[k] == PASSED for k in module) else "failed"
    return MISSING


def _base_step(base: Mapping[str, SuiteRun], cached: bool) -> str:
    counts = []
    for suite, run in base.items():
        failing = sum(outcome != PASSED for outcome in run.tests.values())
        counts.append(f"{len(run.tests)} {suite} ({failing} failing, {len(run.tests) - failing} passing)")
    source = "from the task cache" if cached else "run once for this task and cached"
    return f"Step: base run ({source}). Expected tests: {', '.join(counts)}."


def _any_failing(evidence: Mapping[str, Any]) -> bool:
    """True when a test of the first patched run did not pass (or the run ended by timeout or a limit)."""
    suites = [evidence[suite] for suite in SUITES if isinstance(evidence.get(suite), Mapping)]
    return any(
        suite.get("timed_out") or suite.get("resource_limit") or any(t["outcome"] != PASSED for t in suite["tests"])
        for suite in suites
    )


def _suite_from_evidence(evidence: Mapping[str, Any]) -> SuiteRun:
    """Rebuild the first patched run from a previous result's evidence (for healing)."""
    tests = evidence.get("tests", [])
    return SuiteRun(
        tests={t["name"]: t["outcome"] for t in tests},
        excerpts={t["name"]: t["output"] for t in tests if t.get("output")},
        canary=evidence.get("canary", MISSING),
        returncode=evidence.get("returncode"),
        timed_out=bool(evidence.get("timed_out")),
        resource_limit=evidence.get("resource_limit"),
        report_found=True,
    )


def grade(
    ctx: ScoringContext,
    base: Mapping[str, SuiteRun],
    runs: list[dict[str, SuiteRun]],
    steps: list[str],
    *,
    healed: bool = False,
    runs_apart: str | None = None,
) -> CriticResult:
    """Score the patched runs against the base, exactly as DESIGN.md says; the first run is the reference.

    With several runs (healing), a test whose outcome differs between runs is flaky and leaves both sets.
    `runs_apart` is why the patched tree ruled out one process for both suites (see `choose_mode`); it goes to the
    hidden evidence, which API clients do not see, because a patch could probe it for the hidden tests' names.
    """
    flags = set(ctx.flags & {"tamper", "tests_modified"})
    first = runs[0]
    evidence: dict[str, Any] = {}
    f2p_total = f2p_pass = p2p_total = p2p_pass = 0
    flaky: dict[str, list[str]] = {}
    failing_by_suite: dict[str, int] = {}
    for suite, base_run in base.items():
        tests_evidence = []
        flaky[suite] = []
        failing_by_suite[suite] = 0
        for key, base_outcome in sorted(base_run.tests.items()):
            outcomes = {_outcome_now(key, run[suite]) for run in runs}
            now = _outcome_now(key, first[suite])
            if len(outcomes) > 1:
                flaky[suite].append(key)
                now = "flaky"
            else:
                if base_outcome == PASSED:
                    p2p_total += 1
                    p2p_pass += now == PASSED
                else:
                    f2p_total += 1
                    f2p_pass += now == PASSED
                failing_by_suite[suite] += now != PASSED
            tests_evidence.append(
                {"name": key, "outcome": now, "base": base_outcome, "output": first[suite].excerpts.get(key, "")}
            )
        passed = sum(t["outcome"] == PASSED for t in tests_evidence)
        evidence[suite] = {
            "passed": passed,
            "failed": len(tests_evidence) - passed,
            "tests": tests_evidence,
            "canary": first[suite].canary,
            "returncode": first[suite].returncode,
            "timed_out": first[suite].timed_out,
            "resource_limit": first[suite].resource_limit,
        }
    if runs_apart is not None and "hidden" in evidence:
        evidence["hidden"]["runs_apart"] = runs_apart
    steps.append(_run_step(first, failing_by_suite))

    tamper_reasons = [reason for suite in base for reason in _report_tamper(base[suite], first[suite], suite)]
    suspicious = suspicious_findings(ctx)
    if tamper_reasons:
        flags.add("tamper")
        steps.append(f"Step: report check. {' '.join(tamper_reasons)} Flagged tamper.")
    elif all(base[s].canary != MISSING for s in base):
        steps.append("Step: report check. The harness's canary test failed as it must; the report is consistent.")
    else:
        steps.append("Step: report check. The canary was not collected on the base tree, so it cannot be checked.")
    if suspicious:
        flags.add("suspicious")
        evidence["suspicious"] = suspicious
        steps.append(f"Step: static check of added code. {'; '.join(suspicious[:5])}. Flagged suspicious.")
    if any(run.timed_out for run in first.values()):
        flags.add("timeout")
    if any(run.resource_limit for run in first.values()):
        flags.add("resource_limit")
        limits = sorted({run.resource_limit for run in first.values() if run.resource_limit})
        steps.append(f"Step: limits. The patched run hit the {', '.join(limits)} limit.")
    if p2p_pass < p2p_total:
        flags.add("regression")
    if "hidden" in base and failing_by_suite["visible"] == 0 and failing_by_suite["hidden"] > 0:
        flags.add("overfit")
    flaky_count = sum(len(names) for names in flaky.values())
    if flaky_count:
        flags.add("flaky")
        evidence["flaky_visible"] = flaky["visible"]
        steps.append(
            f"Step: flakiness. {flaky_count} test(s) changed outcome between runs and leave both sets"
            + (f" (visible: {', '.join(flaky['visible'][:5])})." if flaky["visible"] else ".")
        )
    elif healed:
        steps.append("Step: flakiness. Every re-run gave the same outcomes; the failures are real.")

    score = _score(f2p_pass, f2p_total, p2p_pass, p2p_total)
    if "tamper" in flags:
        score = 0.0
    evidence["f2p"] = {"passing": f2p_pass, "total": f2p_total}
    evidence["p2p"] = {"passing": p2p_pass, "total": p2p_total}
    steps.append(_score_step(f2p_pass, f2p_total, p2p_pass, p2p_total, score, "tamper" in flags))
    confidence = _confidence(flags, base, healed=healed)
    return CriticResult("correctness", score, confidence, tuple(steps), evidence, frozenset(flags))


def _score(f2p_pass: int, f2p_total: int, p2p_pass: int, p2p_total: int) -> float:
    """DESIGN.md: (F2P passing / |F2P|) * (P2P passing / |P2P|), each factor 1 when its set is empty."""
    p2p = p2p_pass / p2p_total if p2p_total else 1.0
    if f2p_total == 0:
        return p2p
    return (f2p_pass / f2p_total) * p2p


def _run_step(first: Mapping[str, SuiteRun], failing: Mapping[str, int]) -> str:
    parts = []
    for suite, run in first.items():
        how = " (timed out)" if run.timed_out else f" (limit: {run.resource_limit})" if run.resource_limit else ""
        parts.append(f"{suite}: {failing[suite]} expected test(s) failing or missing{how}")
    return f"Step: patched run. {'; '.join(parts)}."


def _score_step(f2p_pass: int, f2p_total: int, p2p_pass: int, p2p_total: int, score: float, tamper: bool) -> str:
    f2p = f"{f2p_pass} of {f2p_total} F2P tests pass" if f2p_total else "no F2P tests (refactoring task)"
    p2p = f"{p2p_pass} of {p2p_total} P2P tests still pass" if p2p_total else "no P2P tests"
    why = " Tamper sets the score to 0." if tamper else ""
    return f"Step: correctness check. {f2p}, {p2p}.{why} Score {round(score, 4)}."


def _confidence(flags: set[str], base: Mapping[str, SuiteRun], *, healed: bool) -> float:
    """High when the outcome is deterministic; lower with flakiness, timeouts, regressions or suspicion."""
    if "tamper" in flags:
        return 0.95
    confidence = 0.95
    if any(run.canary == MISSING for run in base.values()):
        confidence = min(confidence, 0.8)
    if "regression" in flags or "timeout" in flags or "resource_limit" in flags:
        confidence = min(confidence, 0.85 if healed else 0.6)
    if "flaky" in flags:
        confidence = min(confidence, 0.75)
    if "suspicious" in flags:
        confidence = min(confidence, 0.5)
    return confidence


def _report_tamper(base: SuiteRun, now: SuiteRun, suite: str) -> list[str]:
    """Signs that the patched run's report was bent or forged (the canary only counts if the base collected it)."""
    reasons = []
    if base.canary == MISSING:
        return reasons
    if now.canary == PASSED:
        reasons.append(f"The {suite} canary test, which must fail, passed.")
    elif now.returncode == 0:
        reasons.append(f"The {suite} run claimed success although the canary must fail.")
    elif now.report_found and now.canary == MISSING:
        reasons.append(f"The {suite} report lacks the canary test: it was forged or cut short on purpose.")
    return reasons


# --- Static check of added code -------------------------------------------------------------------------------

_SUSPICIOUS_IMPORTS = {
    "_pytest": "imports pytest internals",
    "pytest": "imports pytest outside the tests",
    "py": "imports py (pytest's helper library)",
    "unittest.mock": "imports unittest.mock outside the tests",
    "mock": "imports mock outside the tests",
    "builtins": "imports builtins (can rebind assert helpers, print, open...)",
    "__builtin__": "imports builtins",
    "atexit": "registers exit handlers (can rewrite the report after pytest wrote it)",
    "ctypes": "uses ctypes (can patch the interpreter's memory)",
    "conftest": "imports conftest",
}
_SUSPICIOUS_ATTRS = {
    ("sys", "modules"): "touches sys.modules",
    ("sys", "_getframe"): "inspects the caller's frame (sys._getframe)",
    ("sys", "settrace"): "installs a trace function",
    ("sys", "setprofile"): "installs a profile function",
    ("sys", "excepthook"): "replaces sys.excepthook",
    ("sys", "meta_path"): "changes the import system (sys.meta_path)",
    ("os", "_exit"): "ends the process with os._exit",
    ("os", "abort"): "aborts the process",
    ("os", "kill"): "sends signals",
    ("inspect", "stack"): "inspects the call stack (inspect.stack)",
    ("inspect", "currentframe"): "inspects frames (inspect.currentframe)",
    ("inspect", "getouterframes"): "inspects the call stack",
    ("gc", "get_referrers"): "walks other objects through the garbage collector",
    ("gc", "get_objects"): "walks every object through the garbage collector",
}
_SUSPICIOUS_NAMES = {
    "__builtins__": "touches __builtins__",
    "__import__": "imports dynamically with __import__",
    "exec": "executes generated code (exec)",
    "eval": "evaluates generated code (eval)",
}
_MODULE_LEVEL_EXITS = {("sys", "exit"), ("os", "_exit")}
_SUSPICIOUS_WORDS = ("pytest", "junit", "conftest")


def suspicious_findings(ctx: ScoringContext) -> list[str]:
    """Reasons why ADDED lines of the patched non-test Python files reach into the test machinery.

    Only nodes that start on an added line count; test files were already reverted. Precise rules (an AST
    walk, no regular expressions on code): imports of pytest / _pytest / mock / builtins / atexit / ctypes;
    sys.modules, frame and trace hooks, os._exit / os.abort / os.kill, inspect.stack and friends, gc walks;
    __builtins__, __import__, exec, eval; sys.exit / exit() / quit() at module level outside an
    `if __name__ == "__main__":` block; an `__eq__` that always returns True or `__ne__` always False; a `__del__`
    (runs after pytest wrote its report); string constants naming pytest, junit or conftest. A file that does
    not parse is reported too (tests will fail on it anyway).
    """
    findings: list[str] = []
    for path in ctx.changed_files:
        if not path.endswith(".py"):
            continue
        added = ctx.added_lines.get(path, frozenset())
        try:
            source = (ctx.patched_dir / path).read_text(errors="replace")
            tree = ast.parse(source, filename=path)
        except (OSError, SyntaxError, ValueError):
            continue
        finder = _Finder(added)
        finder.visit(tree)
        findings += [f"{path}:{line} {reason}" for line, reason in sorted(set(finder.found))]
    return findings


class _Finder(ast.NodeVisitor):
    """Collects (line, reason) for suspicious constructs that start on an added line."""

    def __init__(self, added: frozenset[int]) -> None:
        self.added = added
        self.found: list[tuple[int, str]] = []
        self.depth = 0  # > 0 inside a function body
        self.main_guard = 0

    def _flag(self, node: ast.AST, reason: str) -> None:
        line = getattr(node, "lineno", 0)
        if line in self.added:
            self.found.append((line, reason))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        self._check_module(node, module)
        for alias in node.names:
            self._check_module(node, f"{module}.{alias.name}" if module else alias.name)
        self.generic_visit(node)

    def _check_module(self, node: ast.AST, module: str) -> None:
        for name, reason in _SUSPICIOUS_IMPORTS.items():
            if module == name or module.startswith(name + "."):
                self._flag(node, reason)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name):
            pair = (node.value.id, node.attr)
            if pair in _SUSPICIOUS_ATTRS:
                self._flag(node, _SUSPICIOUS_ATTRS[pair])
            if pair in _MODULE_LEVEL_EXITS and self.depth == 0 and not self.main_guard:
                self._flag(node, f"calls {pair[0]}.{pair[1]} at import time")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in _SUSPICIOUS_NAMES:
            self._flag(node, _SUSPICIOUS_NAMES[node.id])
        if node.id in ("exit", "quit") and self.depth == 0 and not self.main_guard:
            self._flag(node, f"calls {node.id}() at import time")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and any(word in node.value.lower() for word in _SUSPICIOUS_WORDS):
            self._flag(node, "names the test machinery in a string")

    def visit_If(self, node: ast.If) -> None:
        guard = _is_main_guard(node.test)
        self.main_guard += guard
        for child in node.body:
            self.visit(child)
        self.main_guard -= guard
        self.visit(node.test)
        for child in node.orelse:
            self.visit(child)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if node.name == "__del__":
            self._flag(node, "defines __del__ (runs at interpreter exit, after pytest wrote its report)")
        constant = {"__eq__": True, "__ne__": False}.get(node.name)
        if constant is not None and _always_returns(node, constant):
            returns = [n for n in ast.walk(node) if isinstance(n, ast.Return)]
            if any(getattr(n, "lineno", 0) in self.added for n in [node, *returns]):
                self.found.append((node.lineno, f"{node.name} always returns {constant}"))
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    def visit_Assign(self, node: ast.Assign) -> None:
        # `__eq__ = lambda self, other: True`
        for target in node.targets:
            if isinstance(target, ast.Name) and target.id in ("__eq__", "__ne__"):
                constant = target.id == "__eq__"
                value = node.value
                if isinstance(value, ast.Lambda) and _is_constant(value.body, constant):
                    self._flag(node, f"{target.id} always returns {constant}")
        self.generic_visit(node)


def _is_main_guard(test: ast.expr) -> bool:
    """True for `__name__ == "__main__"` (either order)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, *test.comparators]
    names = any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
    main = any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)
    return names and main


def _always_returns(func: ast.FunctionDef | ast.AsyncFunctionDef, constant: bool) -> bool:
    """True when every return statement of `func` (not of nested functions) returns the literal `constant`."""
    returns = []
    stack: list[ast.AST] = list(func.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, ast.Return):
            returns.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return bool(returns) and all(r.value is not None and _is_constant(r.value, constant) for r in returns)


def _is_constant(node: ast.expr, constant: bool) -> bool:
    return isinstance(node, ast.Constant) and node.value is constant
