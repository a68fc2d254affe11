"""The scoring pipeline: prepare the tree, run critics, heal, aggregate, build the Result.

Pure Python. `score` runs everything in one process (`manage.py score_patch`, the demo); the Celery tasks run
`run_stage` once per queue ("exec", then "bench") and `build_result` at the end, with the same code.
"""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scoring.core.aggregate import healing
from scoring.core.aggregate.route import aggregate, default_weights
from scoring.core.analysis.analyser import tool_versions as analysis_tool_versions
from scoring.core.critics.base import Critic
from scoring.core.critics.registry import REGISTRY
from scoring.core.intake.diffcheck import ParsedDiff
from scoring.core.intake.spec import TaskSpec
from scoring.core.sandbox import bwrap, workspace
from scoring.core.sandbox import process as sandbox
from scoring.core.trees import host_lock
from scoring.core.types import CriticResult, PipelineSettings, Weights
from scoring.core.versions import package_version

#: Bumped whenever a change to the pipeline can change a score. Evaluations are unique per version.
PIPELINE_VERSION = "2026.12.1"


def tool_versions() -> dict[str, str]:
    """Versions of everything that can move a score, recorded in every Result."""
    return {
        "python": platform.python_version(),
        "pytest": package_version("pytest"),
        **analysis_tool_versions(),
    }


def stages(critics: Iterable[Critic] = REGISTRY) -> dict[str, tuple[Critic, ...]]:
    """Critics grouped by the queue that runs them, in registry order: {"exec": (...), "bench": (...)}."""
    grouped: dict[str, list[Critic]] = {}
    for critic in critics:
        grouped.setdefault(critic.queue, []).append(critic)
    return {queue: tuple(group) for queue, group in grouped.items()}


@dataclass
class StageOutcome:
    results: dict[str, CriticResult]
    timings_s: dict[str, float] = field(default_factory=dict)
    sandbox: str = "bwrap"


def run_stage(
    *,
    critics: Sequence[Critic],
    spec: TaskSpec,
    diff: ParsedDiff,
    base_archive: Path,
    hidden_archive: Path | None,
    settings: PipelineSettings,
    analyser: Any = None,
) -> StageOutcome:
    """Run `critics` on one patched tree, heal the uncertain ones, and return their results with timings.

    Raises bwrap.SandboxUnavailable when there is no sandbox and unsandboxed runs are not allowed; anything
    the patch itself does ends up in the results, never as an exception.
    """
    mode = bwrap.sandbox_mode(settings.allow_unsandboxed)
    timings: dict[str, float] = {}

    # Test runs hold the host lock shared; a benchmark takes it exclusively (in its critic), so no test run
    # shares the cores with a measurement.
    benchmarking = any(critic.queue == "bench" for critic in critics)
    lock_dir = settings.cache_root / "locks"

    def run(argv, **kwargs):  # type: ignore[no-untyped-def]  # the sandbox runner's signature, forwarded unchanged
        with contextlib.nullcontext() if benchmarking else host_lock(lock_dir, exclusive=False):
            return sandbox.run(argv, allow_unsandboxed=settings.allow_unsandboxed, warm=settings.warm_tests, **kwargs)

    started = time.monotonic()
    with workspace.prepare(
        spec=spec,
        diff=diff,
        base_archive=base_archive,
        hidden_archive=hidden_archive,
        settings=settings,
        run=run,
    ) as ctx:
        ctx.analyser = analyser
        timings["prepare"] = round(time.monotonic() - started, 4)
        results = {}
        for critic in critics:
            t0 = time.monotonic()
            results[critic.name] = critic.evaluate(ctx)
            timings[critic.name] = round(time.monotonic() - t0, 4)
        t0 = time.monotonic()
        results = healing.heal_all(
            ctx,
            results,
            critics,
            threshold=settings.heal_confidence_threshold,
            budget_s=settings.heal_budget_s,
        )
        timings["healing"] = round(time.monotonic() - t0, 4)
    return StageOutcome(results=results, timings_s=timings, sandbox=mode)


def summarize(results: Mapping[str, CriticResult], reasons: Sequence[str]) -> str:
    """One or two sentences a developer can act on: the weakest measured criterion and why it may go to review."""
    measured = [(r.score, name) for name, r in results.items() if r.score is not None]
    if not measured:
        return "Nothing could be measured; see the rationale of each criterion."
    score, name = min(measured)
    last_step = results[name].rationale[-1] if results[name].rationale else ""
    text = (
        f"All criteria look good; weakest is {name} at {score:.2f}."
        if score >= 0.9
        else f"Weakest criterion: {name} at {score:.2f}. {last_step}".strip()
    )
    example = next(
        (
            found[0]
            for result in results.values()
            if (found := (result.evidence.get("discriminator") or {}).get("counterexamples"))
        ),
        None,
    )
    if example is not None and example["call"] not in text:
        text += f" Smallest counterexample: {example['call']}: {example['patch']}, {example['reference']}."
    if reasons:
        text += f" Sent to review: {'; '.join(reasons)}."
    return text


def build_result(
    *,
    task_name: str,
    results: Mapping[str, CriticResult],
    weights: Weights,
    settings: PipelineSettings,
    audit_key: str,
    meta: Mapping[str, Any],
    critics: Iterable[Critic] = REGISTRY,
    held: bool = False,
) -> dict[str, Any]:
    """The Result of docs/contract.md (without the Django-only `id`, `status`, `external_id` and `human`).

    Stored subscores are re-scored under `weights` first (e.g. performance knots), so calling this again with
    another profile re-aggregates without re-running anything. The learned critic's view, when `meta` holds one,
    counts too, so a re-aggregation keeps its `critic_disagrees`; `held`: a reviewer holds the patch in the queue.
    """
    by_name = {c.name: c for c in critics}
    rescored = {name: by_name[name].rescore(result, weights) for name, result in results.items()}
    critic = meta.get("critic") or {}
    agg = aggregate(
        rescored,
        weights,
        audit_key=audit_key,
        confidence_threshold=settings.heal_confidence_threshold,
        critic_disagrees=critic.get("disagrees", ()) if critic.get("status") == "ok" else (),
        held=held,
    )
    flags = set(agg.flags)
    if meta.get("sandbox") == "unsandboxed":
        flags.add("unsandboxed")
    ordered = [c.name for c in critics if c.name in agg.results]
    return {
        "task": task_name,
        "final_score": agg.final_score,
        "weight_profile": {"name": weights.name, "version": weights.version},
        "route": str(agg.route),
        "flags": sorted(flags),
        "subscores": {name: agg.results[name].to_json() for name in ordered},
        "comments": summarize(agg.results, agg.reasons),
        "meta": dict(meta),
    }


def score(
    *,
    spec: TaskSpec,
    diff: ParsedDiff,
    base_archive: Path,
    hidden_archive: Path | None,
    settings: PipelineSettings,
    weights: Weights | None = None,
    critics: Sequence[Critic] = REGISTRY,
    analyser: Any = None,
    task_sha256: str = "",
) -> dict[str, Any]:
    """Score one patch synchronously, every stage in this process, with no database (manage.py score_patch)."""
    results: dict[str, CriticResult] = {}
    timings: dict[str, float] = {}
    mode = "bwrap"
    for group in stages(critics).values():
        outcome = run_stage(
            critics=group,
            spec=spec,
            diff=diff,
            base_archive=base_archive,
            hidden_archive=hidden_archive,
            settings=settings,
            analyser=analyser,
        )
        results.update(outcome.results)
        timings.update(outcome.timings_s)
        mode = outcome.sandbox
    meta = {
        "pipeline_version": PIPELINE_VERSION,
        "tools": tool_versions(),
        "task_sha256": task_sha256,
        "sandbox": mode,
        "timings_s": timings,
    }
    return build_result(
        task_name=spec.name,
        results=results,
        weights=weights or default_weights(critics),
        settings=settings,
        audit_key=diff.sha256,
        meta=meta,
        critics=critics,
    )
