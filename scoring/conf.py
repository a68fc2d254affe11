"""The pipeline's settings, built from Django settings in one place."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from scoring.core.types import PipelineSettings


def pipeline_settings() -> PipelineSettings:
    conf = settings.REVIEWAPP
    return PipelineSettings(
        cache_root=Path(conf["CACHE_ROOT"]),
        work_root=Path(conf["WORK_ROOT"]),
        allow_unsandboxed=conf["ALLOW_UNSANDBOXED"],
        warm_tests=conf["WARM_TESTS"],
        heal_confidence_threshold=conf["HEAL_CONFIDENCE"],
        heal_budget_s=conf["HEAL_BUDGET_S"],
        bench_max_runs=conf["BENCH_MAX_RUNS"],
        bench_budget_s=conf["BENCH_BUDGET_S"],
        bench_score_tolerance=conf["BENCH_SCORE_TOLERANCE"],
        bench_cpus=conf["BENCH_CPUS"],
    )
