"""The discriminator's cost per patch on the demo tasks, once each task's inputs and reference outputs are cached.

For each demo task: the task's facts are computed once (trace, generation, the reference's run: timed apart),
then every manifest patch is prepared and its tests' result computed, and `discriminator.judge` is timed on it:
what the discriminator adds to a patch's scoring (reading the cached facts, one sandboxed probe run, the
comparison). Goal (issue 18): a median of at most 0.5 s.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.common import Goal, Section, log, num, spread, table, with_iqr
from scoring.core.critics import discriminator
from scoring.core.intake.spec import parse_spec
from scoring.core.sandbox import process as sandbox
from scoring.core.sandbox import workspace
from scoring.core.trees import pack_tree
from scoring.core.types import CriticResult, PipelineSettings

DEMO = Path(__file__).resolve().parent.parent / "scoring" / "demo"
GOAL_S = 0.5


def run(scratch: str | None = None, rounds: int = 2, names: list[str] | None = None) -> dict[str, Any]:
    """Time the discriminator per patch on the demo tasks (`rounds` passes over each task's patches)."""
    import tempfile

    root = Path(scratch or tempfile.mkdtemp(prefix="discriminator-bench-"))
    settings = PipelineSettings(cache_root=root / "cache", work_root=root / "work")
    manifest = json.loads((DEMO / "manifest.json").read_text())
    per_task: dict[str, dict[str, Any]] = {}
    all_times: list[float] = []
    for entry in manifest["tasks"]:
        if names and entry["name"] not in names:
            continue
        spec_path = DEMO / entry["spec"]
        spec = parse_spec(spec_path.read_text(), spec_dir=spec_path.parent)
        base = pack_tree(spec.repo, root / f"{spec.name}.tar.gz")
        times: list[float] = []
        first_s = None
        inputs = 0
        for _ in range(rounds):
            for patch in entry["patches"]:
                diff = (DEMO / patch["file"]).read_text()
                with workspace.prepare(
                    spec=replace(spec, hidden_tests=None),
                    diff=diff,
                    base_archive=base,
                    hidden_archive=None,
                    settings=settings,
                    run=sandbox.run,
                ) as ctx:
                    if first_s is None:
                        started = time.perf_counter()
                        discriminator.task_facts(ctx)
                        first_s = time.perf_counter() - started
                    tests = CriticResult("correctness", 1.0, 0.95, ("Step: correctness check. Score 1.0.",))
                    started = time.perf_counter()
                    judged = discriminator.judge(ctx, tests)
                    elapsed = time.perf_counter() - started
                    if judged.evidence["discriminator"].get("ran"):
                        times.append(elapsed)
                        inputs = judged.evidence["discriminator"]["inputs"]
        log(f"discriminator on {spec.name}: median {spread(times)['median']:.3f} s per patch")
        per_task[spec.name] = {"first_s": first_s, "per_patch": spread(times), "inputs": inputs}
        all_times += times
    return {"tasks": per_task, "all": spread(all_times), "goal_s": GOAL_S}


def render(result: dict[str, Any]) -> Section:
    """benchmarks.discriminator_bench.run as a table and a goal."""
    rows = [
        [
            name,
            task["inputs"],
            num(task["first_s"], 2),
            with_iqr(task["per_patch"], 1000, 0, " ms"),
            task["per_patch"]["n"],
        ]
        for name, task in result["tasks"].items()
    ]
    median = result["all"]["median"]
    body = "\n\n".join(
        [
            "Each demo task's facts are computed once (the visible tests traced on the reference tree, the inputs "
            "generated, the reference called on each: the first column), then `discriminator.judge` is timed on "
            "every manifest patch: the cached facts read, one sandboxed probe run on the patched tree, the "
            "comparison in the harness.",
            table(["task", "inputs", "once per task (s)", "added per patch, median (IQR)", "patches timed"], rows),
            f"Median added per patch over all tasks: **{median * 1000:.0f} ms**.",
        ]
    )
    goal = Goal(
        "discriminator cost per patch, inputs cached",
        f"median <= {result['goal_s']:g} s",
        f"{median:.3f} s",
        median <= result["goal_s"],
    )
    return Section("Discriminator cost per patch", body, [goal])
