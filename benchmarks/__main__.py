"""`python -m benchmarks` (`make bench`): run every benchmark and rewrite docs/benchmarks.md.

Each benchmark runs in its own child process under its own time budget (common.call_in_child), so a crash or
a hang costs that benchmark only: it is reported as failed in the document, never dropped. Goals are reported
as met or missed; the exit status is 1 only when a benchmark failed to produce its numbers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import (
    affinity_bench,
    discriminator_bench,
    export_bench,
    intake_bench,
    pages_bench,
    pipeline_bench,
    rewards_bench,
)
from benchmarks.common import (
    ROOT,
    Goal,
    Section,
    call_in_child,
    django_env,
    log,
    machine,
    num,
    redis_url,
    table,
    tool_versions,
)

DOC = ROOT / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Bench:
    """One benchmark: the function a child runs, its budget, and how its result becomes markdown."""

    title: str
    target: str
    budget_s: float
    render: Callable[[dict[str, Any]], Section]
    kwargs: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


def render_analyser(result: dict[str, Any]) -> Section:
    """benchmarks.analyser_bench.run as a table."""
    rows = [
        ["warm analyser (pylint + bandit in one call)", num(result["analyser_median_s"] * 1000, 0)],
        ["`pylint` + `bandit` command-line tools", num(result["cli_median_s"] * 1000, 0)],
        ["of which `pylint`", num(result["pylint_cli_median_s"] * 1000, 0)],
        ["of which `bandit`", num(result["bandit_cli_median_s"] * 1000, 0)],
    ]
    body = "\n\n".join(
        [
            f"`{result['package']}` from PyPI, {result['files']} modules, one changed file per call, same "
            "configuration on both sides. The findings were compared file by file and "
            + ("identical on every file" if result["identical_findings"] else "**not identical**")
            + ". Median milliseconds per file:",
            table(["side", "median ms per file"], rows),
            f"Ratio of medians (CLI / warm): **{result['ratio']:.2f}x**.",
        ]
    )
    goal = Goal(
        "analyser vs CLI tools, per changed file",
        f">= {result['goal_ratio']:g}x",
        f"{result['ratio']:.2f}x",
        result["ratio"] >= result["goal_ratio"],
    )
    return Section("Warm analyser against the pylint and bandit command-line tools", body, [goal])


def render_perf(result: dict[str, Any]) -> Section:
    """benchmarks.perf_bench.run as a table and a summary line."""
    rows = [
        [
            row["noise"],
            f"{row['effect']:g}",
            num(row["sequential_runs"], 1),
            row["fixed_runs"],
            f"{row['agreement']:.0%}",
            row["contradictions"],
            f"{row['sequential_score_error']:.3f}",
            f"{row['fixed_score_error']:.3f}",
            ", ".join(f"{k} {v}" for k, v in row["sequential_verdicts"].items()),
            ", ".join(f"{k} {v}" for k, v in row["fixed_verdicts"].items()),
        ]
        for row in result["rows"]
    ]
    summary = result["summary"]
    body = "\n\n".join(
        [
            f"Seeded synthetic timings ({result['seeds_per_case']} seeds per case; effect = true patched / base "
            "ratio). The same stream of timings feeds the sequential comparison (5 pairs, more only while the score "
            "is in doubt; compared pair by pair, as the critic does; near the threshold it stops once the score "
            f"moves by at most {summary['score_tolerance']:g} inside the interval) and one comparison of its first "
            "20 pairs. A *call* is what a look says about the score: slower, no slowdown (1.0 across the interval: "
            "`same`, `faster`, or a speed-up not yet claimed, where the sequential comparison stops), or still open. "
            "*Score error*: the mean distance between the score each method gives and the true effect's score.",
            table(
                [
                    "noise",
                    "effect",
                    "sequential runs per side (mean)",
                    "fixed runs",
                    "same call",
                    "contradictions",
                    "sequential score error",
                    "fixed score error",
                    "sequential verdicts",
                    "fixed verdicts",
                ],
                rows,
            ),
            f"On average the sequential comparison used **{summary['mean_sequential_runs']} runs per side** against "
            f"{summary['fixed_runs']}, with the same call in {summary['mean_agreement']:.1%} of the cases and "
            f"{summary['contradictions']} contradictions (both made a call, differently).",
        ]
    )
    return Section("Performance critic: sequential runs against a fixed 20", body, [])


def plan(scratch: Path, redis: str) -> list[Bench]:
    """The benchmarks in the order they run; the throughput run writes the Results the page benchmarks clone."""
    samples = str(scratch / "samples.json")
    return [
        Bench(
            "Throughput on rollout groups",
            "benchmarks.pipeline_bench:run_throughput",
            1800,
            pipeline_bench.render_throughput,
            {"samples_out": samples},
        ),
        Bench(
            "Cost per stage on a real package",
            "benchmarks.pipeline_bench:run_stages",
            180,
            pipeline_bench.render_stages,
        ),
        Bench(
            "Intake through the HTTP API",
            "benchmarks.intake_bench:run",
            180,
            intake_bench.render,
            env=django_env(scratch / "intake", redis),
        ),
        Bench(
            "/rewards/: 200 waiting calls on one web process",
            "benchmarks.rewards_bench:run",
            240,
            rewards_bench.render,
            env=django_env(scratch / "rewards", redis),
        ),
        Bench(
            "Task affinity with two workers",
            "benchmarks.affinity_bench:run",
            900,
            affinity_bench.render,
            env=django_env(scratch / "affinity", redis),
        ),
        Bench(
            "Review pages",
            "benchmarks.pages_bench:run",
            240,
            pages_bench.render,
            {"samples": samples},
            env=django_env(scratch / "pages"),
        ),
        Bench(
            "Export",
            "benchmarks.export_bench:run",
            600,
            export_bench.render,
            {"samples": samples},
            env=django_env(scratch / "export"),
        ),
        Bench("Warm analyser against the command-line tools", "benchmarks.analyser_bench:run", 180, render_analyser),
        Bench(
            "Discriminator cost per patch",
            "benchmarks.discriminator_bench:run",
            300,
            discriminator_bench.render,
            {"scratch": str(scratch / "discriminator")},
        ),
        Bench("Performance critic: sequential against fixed", "benchmarks.perf_bench:run", 120, render_perf),
    ]


def run_all(benches: list[Bench]) -> list[tuple[Bench, Section | None, str, float]]:
    """Run each benchmark in turn: (bench, its section or None, the failure if any, seconds taken)."""
    outcomes = []
    for i, bench in enumerate(benches, start=1):
        log(f"[{i}/{len(benches)}] {bench.title}: starting (budget {bench.budget_s:g} s)")
        started = time.monotonic()
        section, failure = None, ""
        try:
            result = call_in_child(bench.target, bench.kwargs, timeout_s=bench.budget_s, env=bench.env)
            section = bench.render(result)
        except Exception as exc:  # a crash in a benchmark or in its rendering is reported in the document
            failure = f"{type(exc).__name__}: {exc}"
        seconds = time.monotonic() - started
        log(f"[{i}/{len(benches)}] {bench.title}: {'FAILED' if failure else 'done'} in {seconds:.0f} s")
        outcomes.append((bench, section, failure, seconds))
    return outcomes


def document(outcomes: list[tuple[Bench, Section | None, str, float]], context: dict[str, Any]) -> str:
    """The whole of docs/benchmarks.md."""
    start, end = context["machine"], context["machine_end"]
    parts = [
        "# Benchmarks",
        f"Written by `make bench` (`python -m benchmarks`) on {context['date']} in {context['minutes']:.1f} "
        "minutes. Do not edit by hand: run it again. Every number comes from this one run; ratios compare two "
        "things measured side by side in it. Medians come with their spread (IQR or min-max).",
        "## Machine",
        table(
            ["CPU", "cores (usable)", "memory", "load average at start (1, 5, 15 min)", "load average at end", "OS"],
            [
                [
                    start["cpu"],
                    f"{start['cores']} ({start['usable_cores']})",
                    f"{start['memory_gib']} GiB",
                    " / ".join(map(str, start["load_average"])),
                    " / ".join(map(str, end["load_average"])),
                    start["os"],
                ]
            ],
        ),
        "The machine may be shared: a load average above the core count means other work competed for the cores "
        "during the run, which slows every number here, the naive baselines included.",
        "## Tool versions",
        table(list(context["tools"]), [list(context["tools"].values())]),
        "## Goals",
    ]
    goal_rows = []
    for bench, section, failure, _ in outcomes:
        if section is None:
            goal_rows.append([bench.title, "—", "—", f"**benchmark failed**: {failure.splitlines()[0][:200]}"])
        for goal in section.goals if section else ():
            goal_rows.append([goal.name, goal.target, goal.measured, "met" if goal.met else "**missed**"])
    parts.append(table(["goal", "target", "measured", "status"], goal_rows))
    for bench, section, failure, seconds in outcomes:
        if section is None:
            parts += [f"## {bench.title}", f"**Failed** after {seconds:.0f} s:", f"```text\n{failure}\n```"]
        else:
            parts += [f"## {section.title}", section.body, f"*({seconds:.0f} s)*"]
    return "\n\n".join(parts) + "\n"


def splice(doc: str, outcomes: list[tuple[Bench, Section | None, str, float]], context: dict[str, Any]) -> str:
    """`doc` with the sections and goal rows of `outcomes` replaced (or added), everything else kept as it was."""
    fresh = document(outcomes, context)
    for bench, section, _, _ in outcomes:
        title = section.title if section else bench.title
        new = _section_text(fresh, title)
        old = _section_text(doc, title)
        if old and not doc.endswith(old):  # a section followed by another keeps its blank line before it
            new = new.rstrip("\n") + "\n\n"
        doc = doc.replace(old, new) if old else doc.rstrip("\n") + "\n\n" + new
        for goal in section.goals if section else ():
            row = next(line for line in fresh.splitlines() if line.startswith(f"| {goal.name} | "))
            current = next((line for line in doc.splitlines() if line.startswith(f"| {goal.name} | ")), None)
            if current:
                doc = doc.replace(current, row)
            else:
                table_end = doc.index("\n\n", doc.index("## Goals\n\n") + len("## Goals\n\n"))
                doc = doc[:table_end] + "\n" + row + doc[table_end:]
    note = f"Sections re-run on {context['date']} with `python -m benchmarks --only`: "
    titles = ", ".join(f"*{(section.title if section else bench.title)}*" for bench, section, _, _ in outcomes)
    return doc.replace("\n\n## Machine", f" {note}{titles} (machine load then: {context['load']}).\n\n## Machine", 1)


def _section_text(doc: str, title: str) -> str:
    """The text of section `title` (its heading up to the next one), or "" when the document has none."""
    start = doc.find(f"\n## {title}\n")
    if start < 0:
        return ""
    end = doc.find("\n## ", start + 1)
    return doc[start + 1 : end + 1 if end >= 0 else len(doc)]


def arguments(argv: list[str]) -> argparse.Namespace:
    """The command line: `--only WORD [WORD ...]`, `--help`; a bad one exits 2 with a message (argparse)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=f"Run the benchmarks and write {DOC.relative_to(ROOT)} (make bench). Takes about 20 minutes.",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="WORD",
        default=[],
        help="run only the benchmarks whose title contains one of the words (case-insensitive), and replace their "
        "sections and goal rows in the existing document, keeping the rest; e.g. --only throughput",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run everything (or the benchmarks named by `--only`), write the document, return the exit status."""
    only = [word.lower() for word in arguments(sys.argv[1:] if argv is None else argv).only]
    started = time.monotonic()
    context: dict[str, Any] = {
        "machine": machine(),
        "tools": tool_versions(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    log(f"machine: {context['machine']}")
    with tempfile.TemporaryDirectory(prefix="bench-") as folder, redis_url(Path(folder)) as redis:
        everything = plan(Path(folder), redis)
        benches = [b for b in everything if not only or any(w in b.title.lower() for w in only)]
        if not benches:
            titles = "; ".join(bench.title for bench in everything)
            print(f"python -m benchmarks: no benchmark title contains {' or '.join(only)}: {titles}", file=sys.stderr)
            return 2
        outcomes = run_all(benches)
    context["machine_end"] = machine()
    context["minutes"] = (time.monotonic() - started) / 60
    if only and DOC.exists():
        context["load"] = " / ".join(map(str, context["machine_end"]["load_average"]))
        DOC.write_text(splice(DOC.read_text(), outcomes, context))
    else:
        DOC.write_text(document(outcomes, context))
    failed = [bench.title for bench, section, _, _ in outcomes if section is None]
    log(f"wrote {DOC.relative_to(ROOT)}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
