"""Coverage of the patched lines by the discriminator's inputs, measured in the sandbox and checked here.

`targets` lists, from the patched tree's source as the harness compiles it (never runs it), the lines the patch
added or changed that lie in a function body: the lines an input can reach. `measure` runs the probe with a
coverage plan on a spread of the cases, in its own sandboxed process (tracing slows the code down, so the
verdict's own run stays untraced and its time caps mean what they say), and keeps only claims signed with the
plan's key (run.call_cases). Coverage never changes a score: low coverage lowers the confidence of perfect
agreement and buys more inputs aimed at the lines no input reached; a claim of coverage the patch faked could at
most spare it that search, and an unsigned claim counts as none.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any

from scoring.core.critics.discriminator import probe, run
from scoring.core.trees import read_regular_file
from scoring.core.types import ScoringContext

#: Below this share of the patched lines reached, perfect agreement is a doubt healing acts on.
MIN_SHARE = 0.8
#: Cases of a coverage run (spread over the task's cases) and their cap, as a multiple of the verdict's cap.
CASES = 120
CAP_FACTOR = 5.0
#: Patched lines followed per patch, and files read (larger patches are followed on their first ones).
MAX_LINES = 500
_MAX_SOURCE_BYTES = 1 << 20
#: Cases kept as seeds for coverage-guided inputs: those that reached the most patched lines.
SEEDS = 16


def targets(ctx: ScoringContext) -> dict[str, list[int]]:
    """{file: line numbers}: the patched lines inside function bodies of the task's non-test Python files."""
    out: dict[str, list[int]] = {}
    count = 0
    for name in sorted(ctx.changed_files):
        if not name.endswith(".py") or probe._is_test_file(name) or count >= MAX_LINES:
            continue
        data = read_regular_file(ctx.patched_dir / name, _MAX_SOURCE_BYTES)
        try:
            code = compile(data or b"", name, "exec", dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
            continue  # the probe cannot import it either: every input disagrees, coverage says nothing more
        lines = sorted(_body_lines(code) & set(ctx.added_lines.get(name, ())))[: MAX_LINES - count]
        if lines:
            out[name] = lines
            count += len(lines)
    return out


def _body_lines(code: types.CodeType) -> set[int]:
    """Lines with instructions inside functions (not the module's or a class body's, which run at import), the
    `def` line itself left out."""
    found: set[int] = set()
    stack = [code]
    while stack:
        current = stack.pop()
        if current.co_flags & 0x01:  # CO_OPTIMIZED: a function, lambda or comprehension body
            found.update(line for _, _, line in current.co_lines() if line and line != current.co_firstlineno)
        stack.extend(const for const in current.co_consts if isinstance(const, types.CodeType))
    return found


def measure(
    ctx: ScoringContext, cases: Sequence[Mapping[str, Any]], plan: Mapping[str, Sequence[int]], *, budget_s: float
) -> dict[int, list[str]]:
    """{case id: "file:line" reached} for a spread of `cases` (each with "id" and "cap_s"), from a signed run."""
    step = max(1, len(cases) // CASES)
    picked = [{**case, "cap_s": CAP_FACTOR * float(case["cap_s"])} for case in list(cases)[::step][:CASES]]
    outcomes = run.call_on_patched(ctx, picked, budget_s=budget_s, coverage=plan)
    return {ident: list(outcome.get("covered", ())) for ident, outcome in outcomes.items()}


def summary(plan: Mapping[str, Sequence[int]], reached: Mapping[int, Sequence[str]]) -> dict[str, Any]:
    """{"lines", "reached", "missed": the lines no input reached, "seeds": ids of the cases reaching most}."""
    wanted = [f"{name}:{line}" for name, lines in sorted(plan.items()) for line in lines]
    hit = {line for lines in reached.values() for line in lines}
    ranked = sorted((ident for ident, lines in reached.items() if lines), key=lambda i: (-len(reached[i]), i))
    return {
        "lines": len(wanted),
        "reached": sum(line in hit for line in wanted),
        "missed": [line for line in wanted if line not in hit],
        "seeds": ranked[:SEEDS],
    }


def is_low(summary: Mapping[str, Any] | None) -> bool:
    """True when the inputs reached less than MIN_SHARE of the patched lines."""
    if not summary:
        return False
    return bool(summary["lines"] > 0 and summary["reached"] < MIN_SHARE * summary["lines"])
