"""Sandboxed runs of the probe: the trace of the visible tests, and calls of entry points on cases.

Each run is `ctx.run(...)` on a scratch copy of a tree, with the probe and its input file in a fresh report
folder. Outcomes are read from the lines the probe appended, one per case, as they happened; a case without a
line is the one the process was on when it died or was killed, and the run goes on from the next case.
"""

from __future__ import annotations

import hmac
import json
import secrets
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scoring.core.critics.discriminator import probe
from scoring.core.critics.discriminator.reference import visible_tests_argv
from scoring.core.trees import read_regular_file, scratch_copy
from scoring.core.types import RunLimits, Runner, ScoringContext

_PROBE_SOURCE = Path(probe.__file__)
#: What starting Python, importing the task's code and writing the lines may cost on top of the cases' caps.
STARTUP_S = 5.0
#: How often a run may be restarted after its process died on a case (each restart is one more process).
MAX_RESTARTS = 5
_MAX_OUTPUT_BYTES = 64 << 20
_MAX_TRACE_BYTES = 32 << 20


def trace(
    *,
    run: Runner,
    tree: Path,
    test_command: str,
    work_root: Path,
    env_dir: Path | None,
    timeout_s: float,
) -> tuple[list[dict[str, Any]], int | None]:
    """Run the visible tests on a scratch copy of `tree` with the probe's profile hook; return (calls, exit status).

    Each call is {"entry", "annotations", "args", "kwargs"} or {"entry", "unrepresentable"}.
    """
    with scratch_copy(tree, work_root=work_root, prefix="trace-") as copy:
        name = f"_discriminator_probe_{secrets.token_hex(4)}"
        shutil.copyfile(_PROBE_SOURCE, copy / f"{name}.py")
        report = copy.parent / "report"
        report.mkdir()
        argv = visible_tests_argv(test_command, plugin=name)
        argv.insert(1, "DISCRIMINATOR_TRACE={report_dir}/trace.jsonl")
        result = run(
            argv, tree=copy, report_dir=report, env_dir=env_dir, limits=RunLimits(wall_s=timeout_s, cpu_s=timeout_s)
        )
        calls = []
        data = read_regular_file(report / "trace.jsonl", _MAX_TRACE_BYTES)  # no link followed, no pipe waited on
        for line in (data or b"").decode(errors="replace").splitlines():
            try:
                calls.append(json.loads(line))
            except (ValueError, RecursionError):
                continue
        return calls, result.returncode


#: What the probe is told of a case; the rest (expected outcomes, sizes) stays in the harness.
CASE_KEYS = ("id", "entry", "args", "kwargs", "cap_s")


def call_on_patched(
    ctx: ScoringContext,
    cases: Sequence[Mapping[str, Any]],
    *,
    budget_s: float,
    coverage: Mapping[str, Sequence[int]] | None = None,
) -> dict[int, dict[str, Any]]:
    """call_cases on the patched tree of `ctx`, the probe told only CASE_KEYS of each case."""
    return call_cases(
        run=ctx.run,
        tree=ctx.patched_dir,
        cases=[{key: case[key] for key in CASE_KEYS} for case in cases],
        work_root=ctx.settings.work_root,
        env_dir=ctx.env_dir,
        budget_s=budget_s,
        coverage=coverage,
    )


def call_cases(
    *,
    run: Runner,
    tree: Path,
    cases: Sequence[Mapping[str, Any]],
    work_root: Path,
    env_dir: Path | None,
    budget_s: float,
    memory_bytes: int = 1 << 30,
    coverage: Mapping[str, Sequence[int]] | None = None,
) -> dict[int, dict[str, Any]]:
    """Call each case's entry point on a scratch copy of `tree`; return {case id: outcome}, one per case.

    A case needs "id", "entry", "args", "kwargs" and "cap_s" (its alarm). Outcomes are the probe's lines, or
    {"status": "timeout" | "crashed"} for the case a killed or dead process was on, or {"status": "not_run"} for
    cases past the time budget or the restart limit. The first line for an id wins.

    With `coverage` ({file: line numbers}, relative to the tree), each outcome whose coverage claim carries a valid
    signature gets "covered": the "file:line" strings of those lines its call ran. A claim without one (forged by
    the tree's code, or a line the tree's code wrote first) counts as no coverage at all: it can only cost the
    patch more inputs, never spare it any.
    """
    outcomes: dict[int, dict[str, Any]] = {}
    pending = list(cases)
    deadline = time.monotonic() + budget_s
    # The reports sit beside the tree copy, in the folder all runs share: warm runs of one worker share one zygote.
    with scratch_copy(tree, work_root=_ensure(work_root), prefix="calls-") as copy:
        holder = copy.parent
        for attempt in range(MAX_RESTARTS + 1):
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 1.0:
                break
            report = holder / f"report-{attempt}"
            report.mkdir()
            shutil.copyfile(_PROBE_SOURCE, report / "probe.py")
            (report / "cases.json").write_text(json.dumps(list(pending)))
            wall = min(remaining, STARTUP_S + sum(float(c["cap_s"]) for c in pending))
            argv = ["python", "{report_dir}/probe.py", "{report_dir}/cases.json", "{report_dir}/outputs.jsonl"]
            key = None
            if coverage is not None:
                key = secrets.token_hex(32)
                plan = {"key": key, "files": {name: sorted(lines) for name, lines in coverage.items()}}
                (report / "plan.json").write_text(json.dumps(plan))
                argv.append("{report_dir}/plan.json")
            result = run(
                argv,
                tree=copy,
                report_dir=report,
                env_dir=env_dir,
                limits=RunLimits(wall_s=wall, cpu_s=wall, memory_bytes=memory_bytes, output_bytes=64 << 10),
            )
            wanted = {int(c["id"]) for c in pending}
            for line in _lines(report / "outputs.jsonl"):
                ident = line.get("id")
                if isinstance(ident, int) and ident in wanted and ident not in outcomes:
                    outcomes[ident] = _with_coverage(line, key, sorted(coverage or ()))
            pending = [c for c in pending if int(c["id"]) not in outcomes]
            if pending:
                # The process stopped on this case: killed by the wall clock, or it died.
                outcomes[int(pending[0]["id"])] = {"status": "timeout" if result.timed_out else "crashed"}
                pending = pending[1:]
    for case in pending:
        outcomes[int(case["id"])] = {"status": "not_run"}
    return outcomes


def _with_coverage(line: dict[str, Any], key: str | None, files: Sequence[str]) -> dict[str, Any]:
    """The outcome line without its coverage claim, plus "covered" when the claim's signature is the probe's."""
    claim, signature = line.pop("cov", None), line.pop("sig", None)
    if key is None or not isinstance(signature, str) or not isinstance(claim, list):
        return line
    expected = probe.coverage_signature(key, line["id"], claim)
    if not hmac.compare_digest(expected, signature):
        return line
    covered = set()
    for item in claim:
        if (
            isinstance(item, list)
            and len(item) == 2
            and all(type(v) is int for v in item)
            and 0 <= item[0] < len(files)
        ):
            covered.add(f"{files[item[0]]}:{item[1]}")
    line["covered"] = sorted(covered)
    return line


def _lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of an outputs file (bad lines skipped; an oversized file reads as empty)."""
    data = read_regular_file(path, _MAX_OUTPUT_BYTES)  # the patch's run could leave a link or a pipe there
    if data is None:
        return []
    text = data.decode("ascii", errors="replace")
    out = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):  # the patch's process may write anything
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
