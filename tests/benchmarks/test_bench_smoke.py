"""Every benchmark of `make bench`, at a tiny size, so a broken benchmark fails `make test` instead of the bench.

Real pipeline, real tools, real Redis and real (throwaway) databases, as in `make bench`; only the sizes shrink.
No network: the package benchmarks run on a small package written here instead of one downloaded from PyPI.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import __main__ as bench_main
from benchmarks import (
    affinity_bench,
    analyser_bench,
    export_bench,
    intake_bench,
    pages_bench,
    perf_bench,
    pipeline_bench,
)
from benchmarks.common import Section, call_in_child, django_env, redis_url

pytestmark = pytest.mark.slow

ORIGINAL = "    counts = {}\n    for item in seq:\n        counts[item] = counts.get(item, 0) + 1\n    return counts\n"
MINI = pipeline_bench.PackageCase(
    requirement="mini==1.0",
    tests="mini/tests",
    hidden="mini/tests/test_hidden.py",
    target="mini/core.py",
    original=ORIGINAL,
    variants=(
        "    return dict(collections.Counter(seq))\n",
        "    counts = collections.Counter(seq)\n    return dict(counts)\n",
    ),
    benchmark=(
        "import sys\nfrom pathlib import Path\n\nsys.path.insert(0, str(Path(__file__).resolve().parent.parent))\n"
        "from mini.core import frequencies\n\nfor _ in range(20):\n    frequencies(list(range(1000)))\n"
    ),
)


def write_mini(root: Path) -> Path:
    """A small package laid out like an sdist: code, its tests inside the package, one test file to hold out."""
    package = root / "mini-1.0"
    (package / "mini" / "tests").mkdir(parents=True)
    (package / "mini" / "__init__.py").write_text("")
    (package / "mini" / "core.py").write_text(
        '"""Counting."""\n\nimport collections\n\n\ndef frequencies(seq):\n    """Count each value."""\n' + ORIGINAL
    )
    (package / "mini" / "tests" / "__init__.py").write_text("")
    (package / "mini" / "tests" / "test_core.py").write_text(
        "from mini.core import frequencies\n\n\ndef test_counts():\n    assert frequencies('abca') == "
        "{'a': 2, 'b': 1, 'c': 1}\n"
    )
    (package / "mini" / "tests" / "test_hidden.py").write_text(
        "from mini.core import frequencies\n\n\ndef test_empty():\n    assert frequencies([]) == {}\n"
    )
    return package


@pytest.fixture(scope="module")
def throughput(tmp_path_factory) -> tuple[dict, str]:
    """One patch of one demo task through both pipelines; returns the result and the samples file."""
    samples = tmp_path_factory.mktemp("samples") / "samples.json"
    result = pipeline_bench.run_throughput(group_size=1, tasks=["intervals"], samples_out=str(samples))
    return result, str(samples)


def assert_section(section: Section, *goal_names: str) -> None:
    assert section.body.count("|---") >= 1, "a section shows its numbers as a table"
    assert [goal.name for goal in section.goals] == list(goal_names)


def test_throughput_measures_both_pipelines_on_the_same_patches(throughput) -> None:
    result, samples = throughput
    (row,) = result["patches"]
    assert row["task"] == "intervals"
    assert row["exec_s"] > 0 and row["bench_s"] > 0 and row["naive_s"] > 0 and row["naive_bench_s"] > 0
    assert row["perf"]["score"] is not None and row["perf"]["method"]
    (sample,) = json.loads(Path(samples).read_text())
    assert sample["result"]["task"] == "intervals" and "+++ b/intervals/merge.py" in sample["diff"]
    assert_section(
        pipeline_bench.render_throughput(result),
        "throughput vs naive (exec stage)",
        "whole pipeline vs naive whole pipeline",
        "whole pipeline, median per patch",
        "bench stage vs exec stage, median per patch",
    )


def test_stage_costs_show_the_base_tests_run_once_per_task(tmp_path) -> None:
    result = pipeline_bench.run_stages(case=MINI, source=str(write_mini(tmp_path)))
    assert [len(p["base_runs"]) for p in result["patches"]] == [2, 0]
    assert all(p["scores"]["correctness"] == 1.0 for p in result["patches"])
    assert all(p["sandbox_s"]["tests"] > 0 and p["sandbox_s"]["benchmark"] > 0 for p in result["patches"])
    section = pipeline_bench.render_stages(result)
    assert_section(section, "overhead share on a real package", "base tests run once per task")
    assert section.goals[1].met


def test_intake_reaches_redis_and_profiles_a_missed_goal(tmp_path) -> None:
    with redis_url(tmp_path) as url:
        result = call_in_child(
            "benchmarks.intake_bench:run",
            {"singles": 3, "batches": 1, "batch_size": 5},
            timeout_s=120,
            env=django_env(tmp_path / "data", url),
        )
    assert result["accepted"] == 5 + 3 + 5  # warm-up, singles, one batch; the profiled batch comes after
    # run() itself fails when an accepted patch is missing from the broker; batches may travel as one message.
    assert 1 <= result["broker_messages"] <= result["accepted"]
    section = intake_bench.render(result)
    assert_section(section, "intake, batched")
    if not section.goals[0].met:
        assert "patch_submit" in section.body, "a missed goal comes with the profile of where time goes"


def test_pages_and_export_run_on_cloned_results(throughput, tmp_path) -> None:
    _, samples = throughput
    pages = call_in_child(
        "benchmarks.pages_bench:run",
        {"samples": samples, "patches": 30, "requests": 3},
        timeout_s=120,
        env=django_env(tmp_path / "pages"),
    )
    assert pages["patches"] == 30 and pages["waiting"] == 12
    assert {name: len(page["times_s"]) for name, page in pages["pages"].items()} == {"queue": 3, "item": 3}
    assert_section(
        pages_bench.render(pages), "/review/ (queue) p95 server time", "/review/<id>/ (item) p95 server time"
    )
    export = call_in_child(
        "benchmarks.export_bench:run",
        {"samples": samples, "labels": 8, "reviewers": 2, "formats": ["raw"], "traced": ["raw"]},
        timeout_s=120,
        env=django_env(tmp_path / "export"),
    )
    assert export["labels"] == 8 and export["patches"] == 4
    assert [(e["fmt"], e["rows"], "tracemalloc_peak_mib" in e) for e in export["exports"]] == [
        ("raw", 4, False),
        ("raw", 4, True),
    ]
    assert_section(export_bench.render(export))


def test_analyser_and_performance_benchmarks_render(tmp_path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(write_mini(tmp_path) / "mini", tree / "mini")
    analysed = analyser_bench.run(1, source=str(tree))
    assert analysed["files"] == 1 and analysed["identical_findings"]
    assert_section(bench_main.render_analyser(analysed), "analyser vs CLI tools, per changed file")
    perf = perf_bench.run(seeds=2)
    assert_section(bench_main.render_perf(perf))


def test_affinity_runs_two_real_workers_in_each_mode(tmp_path) -> None:
    with redis_url(tmp_path) as redis:
        result = call_in_child(
            "benchmarks.affinity_bench:run",
            {"per_task": 1, "rounds": 1, "warm_up": False},
            timeout_s=600,
            env=django_env(tmp_path / "affinity", redis),
        )
    assert {p["mode"] for p in result["patches"]} == {"affinity", "shared"}
    assert len(result["patches"]) == 2 * len(affinity_bench.TASKS)
    assert all(p["status"] != "failed" and p["exec_s"] > 0 for p in result["patches"])
    assert all(p["owner"].endswith("-affinity@bench") for p in result["patches"] if p["mode"] == "affinity")
    assert_section(
        affinity_bench.render(result),
        "rollout groups stay warm: affinity at least as fast as the shared queue, two workers",
    )


def test_failed_benchmark_is_reported_in_the_document_not_dropped() -> None:
    ok = bench_main.Bench("Fine", "benchmarks.x:run", 1, pages_bench.render)
    broken = bench_main.Bench("Broken", "benchmarks.y:run", 1, pages_bench.render)
    section = Section("Fine section", "| a |\n|---|\n| 1 |", [bench_main.Goal("speed", "> 1", "2", True)])
    context = {
        "machine": {"cpu": "x", "cores": 2, "usable_cores": 2, "memory_gib": 1, "load_average": [1, 1, 1], "os": "y"},
        "tools": {"python": "3.11"},
        "date": "today",
        "minutes": 1.0,
    }
    context["machine_end"] = context["machine"]
    doc = bench_main.document([(ok, section, "", 1.0), (broken, None, "ChildFailed: it crashed", 2.0)], context)
    assert "| speed | > 1 | 2 | met |" in doc
    assert "| Broken | — | — | **benchmark failed**: ChildFailed: it crashed |" in doc
    assert "## Broken" in doc and "it crashed" in doc.split("## Broken", 1)[1]
