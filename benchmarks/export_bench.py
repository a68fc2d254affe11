"""Label export: labels per second and peak memory, with 100,000 label events in the database.

`run` (no Django in this process) fills a throwaway database in one child process (patches and evaluations
cloned from real pipeline Results, `reviewers` label events per patch, made with bulk_create), then exports
each format from fresh child processes, so each one's ru_maxrss (the process's peak resident memory) belongs to
that export alone: once timed, once under tracemalloc for the Python heap's peak (tracemalloc slows Python, so
its time is not the one reported). `pairwise` is left out: it pairs every two patches of a task, which is
quadratic in the patches per task by design.
"""

from __future__ import annotations

import resource
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks.common import Section, call_in_child, django_ready, log, num, table

FORMATS = ("sft", "raw")
#: Formats also exported under tracemalloc (about four times slower, so only the one critic training reads).
TRACED = ("sft",)
CHILD_TIMEOUT_S = 900


def populate(*, samples: str, labels: int, reviewers: int) -> dict[str, Any]:
    """Child process: `labels // reviewers` reviewed patches, each labelled once by every reviewer."""
    django_ready()
    from benchmarks.pages_bench import bulk_labels, bulk_scored, load_samples, reviewer

    started = time.perf_counter()
    ids = bulk_scored(load_samples(samples), labels // reviewers, waiting=0.0, reviewed=1.0)
    made = bulk_labels(ids, [reviewer(f"reviewer-{k}") for k in range(reviewers)])
    return {"patches": len(ids), "labels": made, "seconds": time.perf_counter() - started}


def export(*, fmt: str, out: str, trace: bool) -> dict[str, Any]:
    """Child process: one export of `fmt` to `out`; its time, rows, file size and memory peaks."""
    django_ready()
    from exports.services import export_labels

    rss_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    manifest = export_labels(fmt=fmt, out=Path(out))
    seconds = time.perf_counter() - started
    result = {
        "fmt": fmt,
        "seconds": seconds,
        "rows": sum(manifest["counts"].values()),
        "bytes": Path(out).stat().st_size,
        "rss_before_mib": rss_before_kib / 1024,
        "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if trace:
        result["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / (1 << 20)
        tracemalloc.stop()
    return result


def run(
    *,
    samples: str,
    labels: int = 100_000,
    reviewers: int = 2,
    formats: tuple[str, ...] = FORMATS,
    traced: tuple[str, ...] = TRACED,
) -> dict[str, Any]:
    """Fill the database (the environment's, see common.django_env), then time and measure each export."""
    made = call_in_child(
        "benchmarks.export_bench:populate",
        {"samples": samples, "labels": labels, "reviewers": reviewers},
        timeout_s=CHILD_TIMEOUT_S,
    )
    log(f"export: {made['labels']:,} label events on {made['patches']:,} patches in {made['seconds']:.0f} s")
    exports = []
    with tempfile.TemporaryDirectory(prefix="export-bench-") as folder:
        for fmt in formats:
            for trace in (False, True) if fmt in traced else (False,):
                log(f"export: {fmt}{' under tracemalloc' if trace else ''}")
                out = str(Path(folder) / f"{fmt}{'-traced' if trace else ''}.jsonl")
                exports.append(
                    call_in_child(
                        "benchmarks.export_bench:export",
                        {"fmt": fmt, "out": out, "trace": trace},
                        timeout_s=CHILD_TIMEOUT_S,
                    )
                )
    return {**made, "exports": exports}


def render(result: dict[str, Any]) -> Section:
    """Per format: seconds, labels/s, rows/s, file size, ru_maxrss and the tracemalloc peak."""
    rows = []
    for fmt in dict.fromkeys(e["fmt"] for e in result["exports"]):
        timed = next(e for e in result["exports"] if e["fmt"] == fmt and "tracemalloc_peak_mib" not in e)
        traced_run = next((e for e in result["exports"] if e["fmt"] == fmt and "tracemalloc_peak_mib" in e), {})
        rows.append(
            [
                fmt,
                num(timed["seconds"], 1),
                f"**{num(result['labels'] / timed['seconds'], 0)}**",
                num(timed["rows"], 0),
                num(timed["bytes"] / (1 << 20), 0),
                f"{num(timed['rss_peak_mib'], 0)} (at start {num(timed['rss_before_mib'], 0)})",
                num(traced_run.get("tracemalloc_peak_mib"), 1),
            ]
        )
    traced = [f"`{e['fmt']}`" for e in result["exports"] if "tracemalloc_peak_mib" in e]
    body = "\n\n".join(
        [
            f"{result['labels']:,} label events ({result['labels'] // max(result['patches'], 1)} reviewers on each of "
            f"{result['patches']:,} reviewed patches, evaluations cloned from real pipeline Results), SQLite; "
            f"the database took {result['seconds']:.0f} s to fill with bulk_create. Each export runs in a fresh "
            "process: once timed (ru_maxrss is that process's peak resident memory, Django included) and, for "
            f"{', '.join(traced) or 'no format'}, once more under tracemalloc for the peak of Python allocations "
            "during the export (its time is not the one shown: tracemalloc slows Python about fourfold). "
            "`pairwise` is not measured at this size: it pairs every two labelled patches of a task, quadratic by "
            "design.",
            table(["format", "seconds", "labels/s", "rows", "file MiB", "ru_maxrss MiB", "tracemalloc peak MiB"], rows),
        ]
    )
    return Section(f"Export of {result['labels']:,} labels", body, [])
