"""Correctness: the task's visible and hidden tests, on the base and on the patched tree (docs/contract.md, exactly).

How a run is trusted (docs/correctness.md has the full story; the runs themselves are runner.py here):

- every run happens in the sandbox, in a scratch copy (never in the shared base or the patched tree itself);
- the visible and hidden suites share one pytest process when `combine_blocker` finds nothing in the spec, the
  hidden tests or the tree that one process could change; the outcomes are split back by each test's file;
- a verdict is read only from what the patch's code could not write: outcomes streamed as they happen over a
  pipe the harness opened, on a pytest configuration the harness owns, with canaries that look like real tests;
  hidden tests are served from memory. A passing canary, outcomes that contradict each other or the report, or
  a run claiming success is `tamper`, and `tamper` sets the score to 0;
- added code that reaches into the test machinery, or reads how it is being run, is `suspicious` (see
  `suspicious_findings`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from scoring.core.critics import discriminator
from scoring.core.critics.base import Critic
from scoring.core.critics.correctness import combine, runner, static_check
from scoring.core.critics.correctness.runner import MISSING, PASSED, SuiteRun
from scoring.core.intake.spec import TaskSpec
from scoring.core.types import CriticResult, ScoringContext

_BASE_FACTS_FILE = "correctness_base.v2.json"
#: Base facts of a task whose suites run as one process: a file of their own, so that a patched tree that must
#: run its suites apart is graded against base runs made apart too.
_COMBINED_BASE_FACTS_FILE = "correctness_base_combined.v2.json"
#: Re-runs of the base, made once per task and mode when a patched test passes in some healing runs and fails in
#: others: only a test the base is unsteady on too is the task's own flakiness (docs/correctness.md).
_BASE_RERUNS_FILE = "correctness_base_unsteady.v1.json"
_COMBINED_BASE_RERUNS_FILE = "correctness_base_unsteady_combined.v1.json"
#: The suites of a task with hidden tests, in the order runs and evidence list them.
SUITES = ("visible", "hidden")


class CorrectnessCritic(Critic):
    """Grades a patch by the task's tests, visible and hidden, against the base tree's results."""

    name = "correctness"
    label = "Correctness"
    default_weight = 0.4
    gates_reward = True  # a patch that fixes nothing earns nothing under the `gated` shaping
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
        return discriminator.judge(
            ctx, grade(ctx, base, [patched], steps, runs_apart=patched_blocker, shared_process=combined)
        )

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
        task_flaky, base_runs = (
            base_unsteady(ctx, base, combined=combined, deadline=deadline) if unsteady(base, runs) else (frozenset(), 0)
        )
        healed = grade(
            ctx,
            base,
            runs,
            steps,
            healed=True,
            runs_apart=patched_blocker,
            shared_process=combined,
            task_flaky=task_flaky,
            base_runs=base_runs,
        )
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


def unsteady(base: Mapping[str, SuiteRun], runs: Sequence[Mapping[str, SuiteRun]]) -> frozenset[tuple[str, str]]:
    """(suite, test) of the base's tests that pass in some of `runs` and not in others.

    A change among failing outcomes (failed, skipped, missing) is not unsteadiness: the test failed every time.
    """
    found = set()
    for suite, base_run in base.items():
        for key in base_run.tests:
            passes = {_outcome_now(key, run[suite]) == PASSED for run in runs}
            if len(passes) > 1:
                found.add((suite, key))
    return frozenset(found)


def base_unsteady(
    ctx: ScoringContext, base: Mapping[str, SuiteRun], *, combined: bool, deadline: float
) -> tuple[frozenset[tuple[str, str]], int]:
    """The task's own flaky tests, unsteady over the cached base run and up to `flaky_reruns` more, and how many
    runs that was. The re-runs stop at `deadline` (healing's budget); a complete set is cached once per task and
    mode, like the base facts (a complete file renamed into place).

    Healing asks only when a patched test changed outcome. Without it, a patch that randomly crashes or skips
    (one coin per run) made every failing test "flaky", and flaky tests leave both sets: a patch that fixed
    nothing scored 1.0.
    """
    path = ctx.task_cache_dir / (_COMBINED_BASE_RERUNS_FILE if combined else _BASE_RERUNS_FILE)
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        cached = json.loads(path.read_text())
        return frozenset((suite, key) for suite, key in cached["unsteady"]), int(cached["runs"])
    wanted = max(1, ctx.settings.flaky_reruns)
    reruns: list[dict[str, SuiteRun]] = []
    started = time.monotonic()
    while len(reruns) < wanted:
        per_run = (time.monotonic() - started) / len(reruns) if reruns else 0.0
        if deadline - time.monotonic() <= per_run:
            break
        reruns.append(run_suites(ctx, ctx.base_dir, list(base), combined=combined))
    found = unsteady(base, [base, *reruns])
    if len(reruns) == wanted:
        ctx.task_cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".base-", dir=ctx.task_cache_dir)
        with os.fdopen(fd, "w") as handle:
            json.dump({"runs": 1 + wanted, "unsteady": sorted(found)}, handle)
        os.replace(tmp, path)
    return found, 1 + len(reruns)


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
    """Run the visible or hidden suite on a scratch copy of `source`, with canaries, and read its outcomes."""
    hidden = suite == "hidden"
    default_hidden = hidden and not getattr(ctx.spec, "hidden_test_command", None)
    runs = runner.run_pytest(
        ctx,
        source,
        "python -m pytest -q" if default_hidden else _suite_command(ctx, suite),
        hidden=hidden,
        suites=(suite,),
        suite_of=lambda _: (suite,),
        hidden_args=_hidden_test_args if default_hidden else None,
    )
    return runs[suite]


def run_combined(ctx: ScoringContext, source: Path) -> dict[str, SuiteRun]:
    """Run both suites as one pytest process (the visible command plus the hidden test files) and split the outcomes.

    Call only when `combine_blocker` allows it for `source`. A test belongs to the hidden suite when its file is a
    hidden file, to the visible suite otherwise. Both suites keep the run's canaries, exit status, timeout, limit
    and output; the run gets the wall-clock and CPU budgets of the two runs it replaces. The visible tests shared a
    process with the hidden ones, so their output is never shown to API clients (`client_output` in the evidence).
    """
    hidden = combine.cached_tree_files(ctx.hidden_dir)

    def suite_of(file: str) -> tuple[str, ...]:
        path = PurePosixPath(file)
        if not file or path.is_absolute() or ".." in path.parts:
            return SUITES
        return ("hidden",) if path.as_posix() in hidden else ("visible",)

    return runner.run_pytest(
        ctx,
        source,
        ctx.spec.test_command,
        hidden=True,
        suites=SUITES,
        suite_of=suite_of,
        hidden_args=_hidden_test_args,
    )


def _hidden_test_args(layout: runner.HiddenLayout) -> list[str]:
    """The hidden test files, as their stand-ins in the run's tree."""
    return [layout.stub_of.get(path, path) for path in combine.hidden_test_files(layout.stub_of)]


def _suite_command(ctx: ScoringContext, suite: str) -> str:
    """The pytest command of a suite: the spec's (the default hidden one is built from the hidden files)."""
    # Asked for the hidden suite only when the task has a hidden command of its own (run_suite runs the default).
    spec: TaskSpec = ctx.spec
    if suite == "visible":
        return spec.test_command
    assert spec.hidden_test_command is not None
    return spec.hidden_test_command


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
        finished=True,
    )


def grade(
    ctx: ScoringContext,
    base: Mapping[str, SuiteRun],
    runs: list[dict[str, SuiteRun]],
    steps: list[str],
    *,
    healed: bool = False,
    runs_apart: str | None = None,
    shared_process: bool = False,
    task_flaky: frozenset[tuple[str, str]] = frozenset(),
    base_runs: int = 1,
) -> CriticResult:
    """Score the patched runs against the base, exactly as docs/contract.md says; the first run is the reference.

    With several runs (healing), a test that passes in some runs and fails in others is flaky and leaves both sets
    when the base is unsteady on it too (`task_flaky`, over `base_runs` runs, see `base_unsteady`); unsteady on the
    patched tree only, the patch made it unreliable and it counts as failing.
    `runs_apart` is why the patched tree ruled out one process for both suites (see `choose_mode`); it goes to the
    hidden evidence, which API clients do not see, because a patch could probe it for the hidden tests' names.
    """
    flags = set(ctx.flags & {"tamper", "tests_modified"})
    first = runs[0]
    evidence: dict[str, Any] = {}
    f2p_total = f2p_pass = p2p_total = p2p_pass = 0
    flaky: dict[str, list[str]] = {}
    changed = unsteady(base, runs)
    task_leaves, patch_unsteady = changed & task_flaky, changed - task_flaky
    failing_by_suite: dict[str, int] = {}
    for suite, base_run in base.items():
        tests_evidence = []
        flaky[suite] = []
        failing_by_suite[suite] = 0
        for key, base_outcome in sorted(base_run.tests.items()):
            outcomes = [_outcome_now(key, run[suite]) for run in runs]
            now = outcomes[0]
            if (suite, key) in task_leaves:
                flaky[suite].append(key)
                now = "flaky"
            else:
                if now == PASSED and (suite, key) in patch_unsteady:
                    now = next(outcome for outcome in outcomes if outcome != PASSED)
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
    if shared_process:
        # The visible tests ran beside the hidden ones: their output could quote them, so clients never see it.
        evidence["visible"]["client_output"] = False
    steps.append(_run_step(first, failing_by_suite))

    tamper_reasons = list(
        dict.fromkeys(reason for suite in base for reason in _report_tamper(base[suite], first[suite], suite))
    )
    suspicious = suspicious_findings(ctx)
    if tamper_reasons:
        flags.add("tamper")
        steps.append(f"Step: report check. {' '.join(tamper_reasons)} Flagged tamper.")
    elif all(base[s].canary != MISSING for s in base):
        steps.append(
            "Step: report check. The harness's canaries failed as they must; the streamed outcomes are consistent."
        )
    else:
        steps.append("Step: report check. The canaries did not run on the base tree, so they cannot be checked.")
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
    if patch_unsteady:
        evidence["unsteady"] = len(patch_unsteady)
        steps.append(
            f"Step: flakiness. {len(patch_unsteady)} test(s) passed in some runs and failed in others on the patched "
            f"tree only (the base gave the same outcome in {base_runs} run(s)): the patch made them unreliable, so "
            "they count as failing."
        )
    if healed and not flaky_count and not patch_unsteady:
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
    """docs/contract.md: (F2P passing / |F2P|) * (P2P passing / |P2P|), each factor 1 when its set is empty."""
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
    """Signs that the patched run's outcomes were bent or forged (the canaries count only if the base ran them)."""
    reasons = list(dict.fromkeys(now.tamper))
    if base.canary == MISSING:
        return reasons
    if now.canary == PASSED:
        reasons.append(f"A {suite} canary test (a copy of a real test that must fail) passed.")
    elif now.returncode == 0 or now.exitstatus == 0:
        reasons.append(f"The {suite} run claimed success although its canaries must fail.")
    elif now.finished and now.canary == MISSING and (now.planted or PASSED in now.tests.values()):
        # Nothing collected (a patch that does not import) plants no canary and passes nothing: not tampering.
        reasons.append(f"The {suite} run finished without its canaries' outcomes: they were hidden on purpose.")
    return reasons


# --- Static check of added code -------------------------------------------------------------------------------


def suspicious_findings(ctx: ScoringContext) -> list[str]:
    """Reasons ("path:line reason") why lines the patch added reach into the test machinery, or read how they are
    being run (static_check)."""
    return static_check.findings(ctx.patched_dir, ctx.changed_files, ctx.added_lines, base=ctx.base_dir)
