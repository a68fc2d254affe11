"""Shrinking a counterexample: from the smallest disagreeing input, simpler ones the patch still gets wrong.

Greedy, like Hypothesis's shrinker, but with every comparison done in the harness: each round runs the reference
and the patch, at the same time, in two sandboxed processes, on the simplifications of the current input (one and
two steps away, inputs.shrinks, smallest first), and moves to the smallest on which they disagree. It stops when
none does (the input is minimal: no one-step simplification still fails), after ROUNDS, or at the time budget.
The reference's answers on these inputs are cached per task (`ReferenceAnswers`), so patches that fail the same
way share them; the final input's answer is confirmed by a second reference process, like every generated
input's (an answer that changes between runs is no counterexample).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from scoring.core.critics.discriminator import compare, inputs, reference, run
from scoring.core.critics.discriminator.probe import canonical
from scoring.core.types import ScoringContext

ROUNDS = 12
#: Candidates per round: the one-step simplifications, then two-step ones, smallest first.
CANDIDATES = 256
#: The reference's cap per input, as for the task's own inputs.
REFERENCE_CAP_S = 1.0
#: Time a round needs at least (two sandboxed processes start).
ROUND_MIN_S = 0.3


def key_of(case: Mapping[str, Any]) -> str:
    """One string per input (entry point and arguments)."""
    return canonical([case["entry"], case["args"], case.get("kwargs") or {"t": "dict", "v": []}])


class ReferenceAnswers:
    """The reference's answers on inputs made for one patch (shrink candidates, coverage-guided inputs), per task.

    A JSON file in the task cache folder: {input key: expected outcome (compare.expected_of), or None when the
    input is dropped (the reference hangs, dies or answers with something that is not plain data)}, and
    "confirmed:" + key for an answer a second process gave too. Two workers may write it at once: the last rename
    wins and the loser's answers are asked again later, nothing worse.
    """

    def __init__(self, ctx: ScoringContext, *, key: str) -> None:
        self.ctx = ctx
        self.path = ctx.task_cache_dir / f"discriminator-answers-{key}.json"
        self.answers: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError, TypeError):
            self.answers = dict(json.loads(self.path.read_text()))
        self._tree: Path | None = None
        self._stack = contextlib.ExitStack()
        self._changed = False

    def __enter__(self) -> ReferenceAnswers:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self.save()

    def tree(self) -> Path:
        """The reference tree, built on first use and removed on exit."""
        if self._tree is None:
            spec = self.ctx.spec
            self._tree = self._stack.enter_context(
                reference.reference_tree(
                    spec.reference, base_dir=self.ctx.base_dir, work_root=self.ctx.settings.work_root
                )
            )
        return self._tree

    def missing(self, cases: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        return [case for case in cases if key_of(case) not in self.answers]

    def get(self, case: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.answers.get(key_of(case))

    def is_confirmed(self, case: Mapping[str, Any]) -> bool:
        return bool(self.answers.get("confirmed:" + key_of(case)))

    def is_settled(self, case: Mapping[str, Any]) -> bool:
        """True when two processes answered: confirmed, or dropped as answering differently."""
        return "confirmed:" + key_of(case) in self.answers

    def ask(self, cases: Sequence[Mapping[str, Any]], *, budget_s: float) -> dict[int, dict[str, Any]]:
        """Run the reference on `cases` (each with an "id") in one sandboxed process; return its raw outcomes.

        Call `tree()` first, from the thread that owns this object.
        """
        return run.call_cases(
            run=self.ctx.run,
            tree=self.tree(),
            cases=[{**case, "cap_s": REFERENCE_CAP_S} for case in cases],
            work_root=self.ctx.settings.work_root,
            env_dir=self.ctx.env_dir,
            budget_s=max(1.5, budget_s),
        )

    def record(self, cases: Sequence[Mapping[str, Any]], outcomes: Mapping[int, Mapping[str, Any]]) -> None:
        """Keep the reference's answers; a second answer on a known input confirms it or drops it."""
        for case in cases:
            outcome = outcomes.get(case["id"], {"status": "not_run"})
            if outcome.get("status") == "not_run":  # out of time is no answer: ask again another time
                continue
            key = key_of(case)
            if key in self.answers:
                first = self.answers[key]
                agrees = first is not None and compare.verdict(first, outcome) is None
                self.answers["confirmed:" + key] = agrees
                if not agrees:
                    self.answers[key] = None  # it answers differently each time: nothing a patch could match
            else:
                self.answers[key] = compare.expected_of(outcome)
            self._changed = True

    def save(self) -> None:
        if not self._changed:
            return
        self.ctx.task_cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".discriminator-answers-", dir=self.ctx.task_cache_dir)
        with os.fdopen(fd, "w") as handle:
            json.dump(self.answers, handle)
        os.replace(tmp, self.path)
        self._changed = False


def shrink(
    ctx: ScoringContext,
    *,
    answers: ReferenceAnswers,
    case: Mapping[str, Any],
    call: str,
    cap_s: float,
    budget_s: float,
) -> dict[str, Any] | None:
    """The smallest input found by shrinking `case` (the smallest disagreeing generated one, written `call`) on
    which the patch still disagrees with the reference, or None when none smaller was found or confirmed.

    Returns {"case", "example": a counterexample marked "shrunk", "record": {"from", "steps", "tried"}}. The
    patch's cap per input is `cap_s`, the original input's (a simpler input should not take longer).
    """
    deadline = time.monotonic() + budget_s
    current: Mapping[str, Any] = case
    chosen: tuple[dict[str, Any], tuple[str, str]] | None = None
    steps = tried = 0
    with answers, ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(ROUNDS):
            if deadline - time.monotonic() < ROUND_MIN_S:
                break
            candidates = [{**c, "id": i} for i, c in enumerate(inputs.shrinks(current, depth=2)[:CANDIDATES])]
            if not candidates:
                break
            # The chosen input goes along once more: the second reference process's answer confirms it.
            again = [{**chosen[0], "id": -1}] if chosen and not answers.is_confirmed(chosen[0]) else []
            ask = [*answers.missing(candidates), *again]
            if ask:
                answers.tree()
            remaining = deadline - time.monotonic()
            asked = pool.submit(answers.ask, ask, budget_s=remaining) if ask else None
            patched = pool.submit(_patch_outcomes, ctx, candidates, cap_s, remaining)
            answers.record(ask, asked.result() if asked else {})
            outcomes = patched.result()
            tried += len(candidates)
            found = _smallest_disagreeing(candidates, answers.get, outcomes)
            if found is None:
                break
            current, chosen, steps = found[0], found, steps + 1
        if chosen is not None and not answers.is_confirmed(chosen[0]):
            answers.tree()
            answers.record([{**chosen[0], "id": -1}], answers.ask([{**chosen[0], "id": -1}], budget_s=run.STARTUP_S))
    if chosen is None or not answers.is_confirmed(chosen[0]):
        return None
    final, said = chosen
    shown = compare.describe_call(final["entry"], final["args"], final["kwargs"])
    return {
        "case": final,
        "example": {"entry": final["entry"], "call": shown, "patch": said[0], "reference": said[1], "shrunk": True},
        "record": {"from": call, "steps": steps, "tried": tried},
    }


def _patch_outcomes(
    ctx: ScoringContext, cases: Sequence[Mapping[str, Any]], cap_s: float, budget_s: float
) -> dict[int, dict[str, Any]]:
    return run.call_cases(
        run=ctx.run,
        tree=ctx.patched_dir,
        cases=[{**case, "cap_s": cap_s} for case in cases],
        work_root=ctx.settings.work_root,
        env_dir=ctx.env_dir,
        budget_s=max(1.5, budget_s),
    )


def _smallest_disagreeing(
    candidates: Sequence[dict[str, Any]],
    expected_of: Callable[[Mapping[str, Any]], Mapping[str, Any] | None],
    outcomes: Mapping[int, Mapping[str, Any]],
) -> tuple[dict[str, Any], tuple[str, str]] | None:
    """The first candidate (they come smallest first) the reference answered and the patch got wrong."""
    for candidate in candidates:
        expected = expected_of(candidate)
        outcome = outcomes.get(candidate["id"], {"status": "not_run"})
        if expected is None or outcome.get("status") == "not_run":  # dropped, or the patch's run ran out of time
            continue
        said = compare.verdict(expected, outcome)
        if said is not None:
            return candidate, said
    return None
