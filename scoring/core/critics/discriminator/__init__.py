"""The discriminator: the patched entry points and the task's reference, called on the same generated inputs.

`judge(ctx, tests_result)` is the one call the correctness critic makes at the end of `evaluate` and `heal`:
it takes the tests' CriticResult and returns the combined one (score formula `combined_score`, the `overfit`
flag, a "Step: discriminator." sentence citing the smallest counterexamples, evidence["discriminator"]).

Per task, once (cached in the task cache folder, `task_facts`): the reference tree is built in a scratch copy,
the visible tests run on it with the probe's profile hook (entry points and their traced arguments), inputs are
generated from those seeds, and the reference is called on every input. Per patch: one sandboxed probe run on a
scratch copy of the patched tree, and the comparison, here, on plain data; beside it a signed coverage run of the
patched lines (`coverage`), and for a patch that disagrees, the shrinking of its smallest counterexample
(`shrink`). docs/correctness.md, "Discriminator".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from scoring.core.critics.discriminator import compare, coverage, inputs, reference, run, shrink
from scoring.core.critics.discriminator.probe import Unrepresentable, canonical, decode
from scoring.core.critics.discriminator.reference import ReferenceError
from scoring.core.types import CriticResult, PipelineSettings, Runner, ScoringContext

__all__ = [
    "INPUT_VERDICTS",
    "ReferenceError",
    "check_reference",
    "client_evidence",
    "combined_score",
    "heal",
    "judge",
    "task_facts",
]

#: Bumped when the cached task facts change meaning.
FACTS_FORMAT = 5
#: The seed of every generated input (recorded in the evidence): the same seed, the same inputs.
DEFAULT_SEED = 18
#: Inputs per task (traced, the author's and generated), split evenly among the entry points.
INPUT_BUDGET = 300
MAX_ENTRY_POINTS = 8
#: The reference's cap per input (a hang drops the input) and for all its inputs together (its two runs).
REFERENCE_CAP_S = 1.0
REFERENCE_BUDGET_S = 120.0
#: The patch's cap per input: this many times the reference's time, and never less than MIN_CAP_S.
CAP_FACTOR = 20.0
MIN_CAP_S = 0.5
#: Counterexamples kept in the evidence and cited in the rationale.
EVIDENCE_COUNTEREXAMPLES = 5
#: Evidence key of the per-input verdicts kept for the critic's training rows (the `discriminator` export).
#: Never shown to API clients nor put in the critic's prompt: see `client_evidence`.
INPUT_VERDICTS = "input_verdicts"
#: Per-input verdicts kept per patch: the smallest disagreeing inputs and an even sample of the agreeing ones.
VERDICTS_DISAGREE = 24
VERDICTS_AGREE = 24
RATIONALE_COUNTEREXAMPLES = 2
#: The time shrinking the smallest counterexample may add to a patch (shrink.shrink).
SHRINK_BUDGET_S = 2.0
STEP = "Step: discriminator."
HEAL_STEP = "Step: discriminator healing."
#: Perfect agreement on fewer inputs than this is a doubt that healing spends more inputs on.
FEW_INPUTS = 60
#: Confidence of such a result until healing has looked further.
FEW_INPUTS_CONFIDENCE = 0.65
#: Patched lines no input reached, named in the rationale.
RATIONALE_MISSED = 4
#: Coverage-guided inputs per healing round (mutations of the inputs that reached the most patched lines).
GUIDED_INPUTS = 200
#: Healing's inputs per round (a fresh seed each round) and the least time a round needs.
HEAL_INPUTS = 600
HEAL_ROUND_MIN_S = 3.0


def agreement_rate(per_entry: Mapping[str, Mapping[str, int]]) -> float:
    """The product over entry points of the share of that entry point's inputs on which the patch agrees.

    A product, like the tests' F2P x P2P: an entry point the patch did not touch (and agrees on everywhere) must
    not dilute the disagreement of the one it got wrong.
    """
    rate = 1.0
    for counts in per_entry.values():
        if counts["inputs"]:
            rate *= (counts["inputs"] - counts["disagree"]) / counts["inputs"]
    return rate


def combined_score(tests_score: float, agreement: float) -> float:
    """Correctness with a reference: the tests' score times the agreement rate (`agreement_rate`).

    The one place the formula lives (docs/correctness.md, "Discriminator"): a no-op keeps the tests' 0, an honest
    fix keeps its 1.0, and a patch that only satisfies the visible tests loses the share of inputs it gets wrong.
    """
    return max(0.0, min(1.0, tests_score * agreement))


def client_evidence(verdict: Mapping[str, Any]) -> dict[str, Any]:
    """evidence["discriminator"] as API clients and the critic's prompt see it: without the per-input verdicts.

    Which of the task's generated inputs a patch gets right tells, with the patch in hand, the reference's answer
    on each of them; the inputs are the same for every patch of the task (one seed), so a table of those answers
    would let an agent hard-code them. The Result shows counts and the few counterexamples, as with hidden tests.
    """
    return {key: value for key, value in verdict.items() if key != INPUT_VERDICTS}


def check_reference(
    *, spec: Any, reference_path: Path, base_dir: Path, settings: PipelineSettings, run_command: Runner
) -> None:
    """Raise ReferenceError unless the reference applies to the base and passes the visible tests."""
    reference.check(
        spec=spec,
        reference=reference_path,
        base_dir=base_dir,
        work_root=settings.work_root,
        run=run_command,
        cache_dir=settings.cache_root,
    )


def judge(ctx: ScoringContext, result: CriticResult, previous: CriticResult | None = None) -> CriticResult:
    """The tests' result combined with the discriminator's verdict on this patch (never raises on the patch).

    `previous` (from healing) carries an earlier verdict for the same patch: it is reused, not run again, and a
    new step is appended after the healed tests' steps (a healed rationale extends the old one).
    """
    if result.score is None:
        return result
    spec_reference = getattr(ctx.spec, "reference", None)
    if spec_reference is None:
        return _not_run(result, "the task has no reference solution, so the score rests on the tests alone")
    if "tamper" in result.flags:
        return _not_run(result, "the patch tampered with the test machinery, which sets correctness to 0")
    earlier = (previous.evidence.get("discriminator") if previous is not None else None) or {}
    if earlier.get("ran"):
        return _combine(result, dict(earlier))
    started = time.monotonic()
    try:
        facts = task_facts(ctx)
    except ReferenceError as exc:
        return _not_run(result, str(exc))
    except FileNotFoundError:
        return _not_run(result, "the task's stored reference is missing")
    if facts.get("error"):
        return _not_run(result, facts["error"])
    verdict = _verdict(ctx, facts)
    # What the discriminator added to this patch's scoring, so its cost can be told from the tests' (make bench).
    verdict["elapsed_s"] = round(time.monotonic() - started, 4)
    return _combine(result, verdict)


def _not_run(result: CriticResult, why: str) -> CriticResult:
    evidence = {**result.evidence, "discriminator": {"ran": False, "reason": why}}
    step = f"{STEP} Did not run: {why}."
    if step in result.rationale:  # healing extends a rationale that already says it
        return replace(result, evidence=evidence)
    # Before the tests' own score step, which stays last: it still gives the score.
    steps = (*result.rationale[:-1], step, *result.rationale[-1:])
    return replace(result, rationale=steps, evidence=evidence)


def _verdict(ctx: ScoringContext, facts: Mapping[str, Any]) -> dict[str, Any]:
    """Run the patched entry points on the task's cases and compare; the evidence["discriminator"] of the patch."""
    cases = [
        {**case, "cap_s": max(MIN_CAP_S, CAP_FACTOR * float(case["expected"].get("time_s", 0.0)))}
        for case in facts["cases"]
    ]
    budget = min(float(getattr(ctx.spec, "timeout_s", 60)), run.STARTUP_S + sum(c["cap_s"] for c in cases))
    plan = coverage.targets(ctx)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Coverage in a process of its own, at the same time: tracing must not slow the verdict's run.
        reached = pool.submit(coverage.measure, ctx, cases, plan, budget_s=budget) if plan else None
        outcomes = run.call_on_patched(ctx, cases, budget_s=budget)
        covered = reached.result() if reached is not None else None
    verdict = _tally(ctx, facts, cases, outcomes, shrinking=True)
    if covered is not None:
        verdict["coverage"] = coverage.summary(plan, covered)
    return verdict


def _tally(
    ctx: ScoringContext,
    facts: Mapping[str, Any],
    cases: Sequence[Mapping[str, Any]],
    outcomes: Mapping[int, Mapping[str, Any]],
    *,
    shrinking: bool,
) -> dict[str, Any]:
    """The verdict on `cases` (each with "expected" and "cap_s") from the patch's `outcomes`, compared here."""
    found, agreeing = [], []
    per_entry = {entry: {"inputs": 0, "disagree": 0} for entry in facts["entry_points"]}
    for case in cases:
        verdict = compare.verdict(case["expected"], outcomes.get(case["id"], {"status": "not_run"}))
        counts = per_entry.setdefault(case["entry"], {"inputs": 0, "disagree": 0})
        counts["inputs"] += 1
        counts["disagree"] += verdict is not None
        if verdict is not None:
            size = len(canonical([case["args"], case["kwargs"]]))
            call = compare.describe_call(case["entry"], case["args"], case["kwargs"])
            found.append(
                (size, case["id"], {"entry": case["entry"], "call": call, "patch": verdict[0], "reference": verdict[1]})
            )
        else:
            agreeing.append(case)
    found.sort(key=lambda item: (item[0], item[1]))
    by_id = {case["id"]: case for case in cases}
    shrunk = (
        shrink.shrink(
            ctx,
            answers=shrink.ReferenceAnswers(ctx, key=_facts_key(ctx.spec, int(facts["seed"]), 0)),
            case=by_id[found[0][1]],
            call=found[0][2]["call"],
            cap_s=by_id[found[0][1]]["cap_s"],
            budget_s=SHRINK_BUDGET_S,
        )
        if found and shrinking
        else None
    )
    timeouts = sum(1 for o in outcomes.values() if o.get("status") in ("timeout", "not_run"))
    return {
        "ran": True,
        "seed": facts["seed"],
        "entry_points": facts["entry_points"],
        "inputs": len(cases),
        "disagree": len(found),
        "per_entry": per_entry,
        "timeouts": timeouts,
        "sources": facts["sources"],
        "dropped": facts["dropped"],
        "counterexamples": ([shrunk["example"]] if shrunk else [])
        + [item[2] for item in found[: EVIDENCE_COUNTEREXAMPLES - bool(shrunk)]],
        "notes": facts.get("notes", []),
        INPUT_VERDICTS: _input_verdicts(
            [*([shrunk["case"]] if shrunk else []), *(by_id[i[1]] for i in found)], agreeing
        ),
        **({"shrink": shrunk["record"]} if shrunk else {}),
    }


def _input_verdicts(
    disagreeing: Sequence[Mapping[str, Any]], agreeing: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The per-input verdicts kept for training rows: {"entry", "call", "agrees"}, the call written out in full.

    The smallest disagreeing inputs first, then agreeing ones spread evenly over the input set (the traced seeds
    and the first mutations would otherwise fill the sample). A call too long to write out is left out rather
    than cut: a row must show the critic the input that was run.
    """
    out: list[dict[str, Any]] = []
    for cases, agrees, wanted in ((disagreeing, False, VERDICTS_DISAGREE), (agreeing, True, VERDICTS_AGREE)):
        calls = [
            (case["entry"], call)
            for case in cases
            if (call := compare.full_call(case["entry"], case["args"], case["kwargs"])) is not None
        ]
        step = max(1, len(calls) // wanted) if agrees else 1
        out.extend({"entry": entry, "call": call, "agrees": agrees} for entry, call in calls[::step][:wanted])
    return out


def _healed(previous: CriticResult, verdict: dict[str, Any]) -> CriticResult:
    """The tests' part of `previous` (its discriminator evidence dropped), combined again with the healed verdict."""
    verdict["healed"] = True
    tests = replace(
        previous,
        score=verdict["tests_score"],
        confidence=verdict["tests_confidence"],
        evidence={k: v for k, v in previous.evidence.items() if k != "discriminator"},
    )
    return _combine(tests, verdict)


def _combine(result: CriticResult, verdict: dict[str, Any]) -> CriticResult:
    """The tests' result with the verdict folded in: score, flag, one rationale step, the evidence."""
    total, disagree = verdict["inputs"], verdict["disagree"]
    agreement = agreement_rate(verdict["per_entry"])
    tests_score = float(result.score or 0.0)
    score = combined_score(tests_score, agreement)
    verdict = {**verdict, "agreement": round(agreement, 4), "tests_score": round(tests_score, 4)}
    parts = [f"{STEP} {total} generated inputs (seed {verdict['seed']}), {disagree} disagree."]
    if verdict.get("dropped"):
        why = "; ".join(f"{reason}: {count}" for reason, count in sorted(verdict["dropped"].items()))
        parts.append(f"Inputs left out ({why}).")
    if disagree == 0:
        parts.append("The patch agrees with the reference on every one.")
    for example in verdict["counterexamples"][:RATIONALE_COUNTEREXAMPLES]:
        shrunk = f" (shrunk in {verdict['shrink']['steps']} steps)" if example.get("shrunk") else ""
        parts.append(f"{example['call']}: {example['patch']}, {example['reference']}{shrunk}.")
    formula = f"Correctness = tests {round(tests_score, 4)} x agreement {round(agreement, 4)} = {round(score, 4)}."
    parts.append(formula)
    flags = set(result.flags)
    if disagree:
        flags.add("overfit")
        parts.append("Flagged overfit.")
    confidence = result.confidence
    reach = verdict.get("coverage")
    if reach and reach["reached"] < reach["lines"]:
        missed = ", ".join(reach["missed"][:RATIONALE_MISSED])
        more = f" and {len(reach['missed']) - RATIONALE_MISSED} more" if len(reach["missed"]) > RATIONALE_MISSED else ""
        parts.append(
            f"The inputs reached {reach['reached']} of the {reach['lines']} patched lines; never {missed}{more}."
        )
    if disagree == 0 and total < FEW_INPUTS and not verdict.get("healed"):
        confidence = min(confidence, FEW_INPUTS_CONFIDENCE)
        parts.append(f"Perfect agreement on fewer than {FEW_INPUTS} inputs: healing may try more.")
    elif disagree == 0 and coverage.is_low(reach) and not verdict.get("healed"):
        confidence = min(confidence, FEW_INPUTS_CONFIDENCE)
        parts.append("Perfect agreement that leaves patched lines unreached: healing may aim inputs at them.")
    verdict["tests_confidence"] = result.confidence
    evidence = {**result.evidence, "discriminator": verdict}
    steps = (*result.rationale, " ".join(parts))
    return replace(
        result, score=score, confidence=confidence, rationale=steps, evidence=evidence, flags=frozenset(flags)
    )


def heal(ctx: ScoringContext, previous: CriticResult, budget_s: float) -> CriticResult:
    """More inputs for a verdict of perfect agreement on few inputs, or that left patched lines unreached
    (`_heal_coverage`), within `budget_s`; else `previous` unchanged.

    Each round draws a fresh seed's inputs (their reference outputs cached per task like the first ones), keeps
    those not tried yet, runs the patch on them and merges the counts. Healing stops at the budget, after three
    rounds, or when a round brings nothing new (the entry points' input space is small: the doubt is settled).
    """
    verdict = dict(previous.evidence.get("discriminator") or {})
    if not verdict.get("ran") or verdict["disagree"] or verdict.get("healed"):
        return previous
    if verdict["inputs"] >= FEW_INPUTS:
        if coverage.is_low(verdict.get("coverage")):
            return _heal_coverage(ctx, previous, verdict, budget_s)
        return previous
    deadline = time.monotonic() + budget_s
    tried = {_case_key(case) for case in task_facts(ctx, seed=verdict["seed"]).get("cases", [])}
    rounds: list[tuple[int, int]] = []
    exhausted = False
    for round_seed in range(verdict["seed"] + 1, verdict["seed"] + 4):
        if deadline - time.monotonic() < HEAL_ROUND_MIN_S:
            break
        facts = task_facts(ctx, seed=round_seed, budget=HEAL_INPUTS)
        fresh = [case for case in facts.get("cases", []) if _case_key(case) not in tried]
        if not fresh:
            exhausted = True
            break
        tried.update(_case_key(case) for case in fresh)
        rounds.append((round_seed, len(fresh)))
        verdict = _merge(verdict, _verdict(ctx, {**facts, "cases": fresh}))
        if verdict["disagree"] or verdict["inputs"] >= FEW_INPUTS:
            break
    if not rounds and not exhausted:
        return previous  # no time for a round: the doubt stands
    healed = _healed(previous, verdict)
    added = sum(count for _, count in rounds)
    if rounds:
        seeds = ", ".join(str(seed) for seed, _ in rounds)
        total = f"{verdict['inputs']} in all, {verdict['disagree']} disagree"
        step = f"{HEAL_STEP} {added} more inputs (seeds {seeds}); {total}."
    else:
        step = f"{HEAL_STEP} No new input could be generated: the entry points' inputs are few, and all agree."
    return replace(healed, rationale=(*healed.rationale, step))


def _heal_coverage(
    ctx: ScoringContext, previous: CriticResult, verdict: dict[str, Any], budget_s: float
) -> CriticResult:
    """Coverage-guided inputs for perfect agreement that left patched lines unreached, within `budget_s`.

    Each round mutates the inputs that reached the most patched lines (the first round: the coverage run's
    seeds; later ones: the inputs that reached a line none had reached before, if any), asks the reference in two
    processes (an answer that changes is dropped) while the coverage run measures the new inputs, then runs the
    patch on those the reference answered, and merges the counts. It stops when the patched lines are reached,
    at a disagreement, after three rounds or at the budget. The tests' confidence comes back either way: the
    search was made, and the lines still unreached are named for the reviewer.
    """
    deadline = time.monotonic() + budget_s
    facts = task_facts(ctx, seed=verdict["seed"])
    base = {case["id"]: case for case in facts.get("cases", [])}
    seeds = [base[i] for i in verdict["coverage"]["seeds"] if i in base] or list(base.values())[: coverage.SEEDS]
    tried = {_case_key(case) for case in base.values()}
    plan = coverage.targets(ctx)
    rounds: list[tuple[int, int]] = []
    answers = shrink.ReferenceAnswers(ctx, key=_facts_key(ctx.spec, int(verdict["seed"]), 0))
    with answers, ThreadPoolExecutor(max_workers=1) as pool:
        for round_seed in range(verdict["seed"] + 1, verdict["seed"] + 4):
            if deadline - time.monotonic() < HEAL_ROUND_MIN_S or not seeds:
                break
            entries = sorted({case["entry"] for case in seeds})
            fresh = []
            for entry in entries:
                mine = [case for case in seeds if case["entry"] == entry]
                made = inputs.generate(entry, mine, count=GUIDED_INPUTS // len(entries), seed=round_seed)
                fresh += [case for case in made if _case_key(case) not in tried]
            if not fresh:
                break
            tried.update(_case_key(case) for case in fresh)
            fresh = [{**case, "id": i} for i, case in enumerate(fresh)]
            remaining = deadline - time.monotonic()
            answers.tree()
            measuring = pool.submit(
                coverage.measure,
                ctx,
                [{**case, "cap_s": MIN_CAP_S} for case in fresh],
                plan,
                budget_s=remaining / 2,
            )
            for _ in range(2):  # two processes: an answer that changes between them is no input
                unsettled = [case for case in fresh if not answers.is_settled(case)]
                if unsettled:
                    answers.record(unsettled, answers.ask(unsettled, budget_s=remaining / 4))
            cases = [
                {**case, "expected": expected, "cap_s": max(MIN_CAP_S, CAP_FACTOR * float(expected.get("time_s", 0)))}
                for case in fresh
                if answers.is_confirmed(case) and (expected := answers.get(case)) is not None
            ]
            reached = measuring.result()
            outcomes = run.call_on_patched(ctx, cases, budget_s=max(1.5, deadline - time.monotonic()))
            rounds.append((round_seed, len(cases)))
            missed = set(verdict["coverage"]["missed"])
            newly = [case for case in fresh if missed & set(reached.get(case["id"], ()))]
            verdict = _merge(
                verdict,
                {
                    **_tally(ctx, facts, cases, outcomes, shrinking=False),
                    "coverage": _after(verdict["coverage"], reached),
                },
            )
            seeds = newly or seeds
            if verdict["disagree"] or not coverage.is_low(verdict["coverage"]):
                break
    if not rounds:
        return previous  # no time for a round: the doubt stands
    healed = _healed(previous, verdict)
    reach = verdict["coverage"]
    seeds_used = ", ".join(str(seed) for seed, _ in rounds)
    step = (
        f"{HEAL_STEP} {sum(n for _, n in rounds)} more inputs aimed at the unreached patched lines (seeds "
        f"{seeds_used}); they reach {reach['reached']} of {reach['lines']}; {verdict['inputs']} in all, "
        f"{verdict['disagree']} disagree."
    )
    return replace(healed, rationale=(*healed.rationale, step))


def _after(before: Mapping[str, Any], reached: Mapping[int, Sequence[str]]) -> dict[str, Any]:
    """A coverage summary with the lines `reached` by new inputs taken out of its missed ones."""
    hit = {line for lines in reached.values() for line in lines}
    missed = [line for line in before["missed"] if line not in hit]
    return {**before, "missed": missed, "reached": before["lines"] - len(missed)}


def _case_key(case: Mapping[str, Any]) -> str:
    return canonical([case["entry"], case["args"], case["kwargs"]])


def _merge(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Two verdicts on disjoint cases of one patch as one: counts added, counterexamples smallest first."""
    per_entry = {entry: dict(counts) for entry, counts in first["per_entry"].items()}
    for entry, counts in second["per_entry"].items():
        mine = per_entry.setdefault(entry, {"inputs": 0, "disagree": 0})
        mine["inputs"] += counts["inputs"]
        mine["disagree"] += counts["disagree"]
    examples = sorted(
        [*first["counterexamples"], *second["counterexamples"]], key=lambda e: (len(e["call"]), e["call"])
    )
    verdicts = [*first.get(INPUT_VERDICTS, ()), *second.get(INPUT_VERDICTS, ())]
    kept = [v for v in verdicts if not v["agrees"]][:VERDICTS_DISAGREE] + [v for v in verdicts if v["agrees"]][
        :VERDICTS_AGREE
    ]
    reach = first.get("coverage")
    if reach and second.get("coverage"):
        missed = set(second["coverage"]["missed"])
        unreached = [line for line in reach["missed"] if line in missed]
        reach = {**reach, "missed": unreached, "reached": reach["lines"] - len(unreached)}
    return {
        **first,
        **({"coverage": reach} if reach else {}),
        "inputs": first["inputs"] + second["inputs"],
        "disagree": first["disagree"] + second["disagree"],
        "timeouts": first["timeouts"] + second["timeouts"],
        "per_entry": per_entry,
        "counterexamples": examples[:EVIDENCE_COUNTEREXAMPLES],
        INPUT_VERDICTS: kept,
    }


# --- task facts: computed once per task and cached -----------------------------------------------------------


def task_facts(ctx: ScoringContext, *, seed: int = DEFAULT_SEED, budget: int = INPUT_BUDGET) -> dict[str, Any]:
    """The task's cases with the reference's outcomes, from the cache or computed now and cached.

    {"seed", "entry_points", "cases": [{"id", "entry", "args", "kwargs", "expected"}], "sources": counts by
    origin, "dropped": counts by reason, "notes", "error": why nothing can run (None when cases exist)}.
    Raises ReferenceError when the reference cannot be applied. Two workers may compute it at once; each writes a
    complete file and the last rename wins.
    """
    path = ctx.task_cache_dir / f"discriminator-{_facts_key(ctx.spec, seed, budget)}.json"
    with contextlib.suppress(OSError, ValueError):
        cached: dict[str, Any] = json.loads(path.read_text())
        return cached
    facts = _compute_facts(ctx, seed=seed, budget=budget)
    ctx.task_cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".discriminator-", dir=ctx.task_cache_dir)
    with os.fdopen(fd, "w") as handle:
        json.dump(facts, handle)
    os.replace(tmp, path)
    return facts


def _facts_key(spec: Any, seed: int, budget: int) -> str:
    """The cache key of a task's facts: what they are computed from."""
    material = {
        "format": FACTS_FORMAT,
        "reference": reference.digest(spec.reference),
        "entry_points": list(getattr(spec, "entry_points", ())),
        "inputs": list(getattr(spec, "inputs", ())),
        "seed": seed,
        "budget": budget,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


def _compute_facts(ctx: ScoringContext, *, seed: int, budget: int) -> dict[str, Any]:
    spec = ctx.spec
    timeout = float(getattr(spec, "timeout_s", 60))
    facts: dict[str, Any] = {
        "seed": seed,
        "entry_points": [],
        "cases": [],
        "sources": {},
        "dropped": {},
        "notes": [],
        "error": None,
    }
    with reference.reference_tree(spec.reference, base_dir=ctx.base_dir, work_root=ctx.settings.work_root) as tree:
        calls, returncode = run.trace(
            run=ctx.run,
            tree=tree,
            test_command=spec.test_command,
            work_root=ctx.settings.work_root,
            env_dir=ctx.env_dir,
            timeout_s=2 * timeout,  # the profile hook slows the tests down
        )
        if returncode not in (0, None):
            facts["notes"].append(f"the visible tests exited with status {returncode} on the reference tree")
        author = _author_cases(spec)
        entry_points = list(getattr(spec, "entry_points", ())) or sorted({call["entry"] for call in calls})
        entry_points += sorted({c["entry"] for c in author if c["entry"] and c["entry"] not in entry_points})
        if not entry_points:
            facts["error"] = (
                "no entry point was found: the visible tests call no module-level function of the task's code "
                "on the reference tree (name them in the spec's entry_points)"
            )
            return facts
        if len(entry_points) > MAX_ENTRY_POINTS:
            facts["notes"].append(f"only the first {MAX_ENTRY_POINTS} of {len(entry_points)} entry points are used")
            entry_points = entry_points[:MAX_ENTRY_POINTS]
        facts["entry_points"] = entry_points
        cases, sources = _cases(entry_points, calls, author, seed=seed, budget=budget)
        facts["sources"] = sources
        for ident, item in enumerate(cases):
            item["id"] = ident
        # Twice, in two processes: an answer that changes between them (randomness, the clock, object ids) cannot
        # be asked of the patch. Set order is stable across processes: the sandbox fixes PYTHONHASHSEED.
        outcomes, again = (
            run.call_cases(
                run=ctx.run,
                tree=tree,
                cases=[{**item, "cap_s": REFERENCE_CAP_S} for item in cases],
                work_root=ctx.settings.work_root,
                env_dir=ctx.env_dir,
                budget_s=REFERENCE_BUDGET_S / 2,
            )
            for _ in range(2)
        )
    kept: list[dict[str, Any]] = []
    dropped: dict[str, int] = {}
    missing: dict[str, str] = {}
    for item in cases:
        outcome = outcomes.get(item["id"], {"status": "not_run"})
        expected = compare.expected_of(outcome)
        if expected is not None:
            if compare.verdict(expected, again.get(item["id"], {"status": "not_run"})) is None:
                kept.append({**item, "expected": expected})
            else:
                reason = "the reference answers differently each time"
                dropped[reason] = dropped.get(reason, 0) + 1
            continue
        status = outcome.get("status")
        reason = {
            "timeout": "the reference hangs",
            "crashed": "the reference's process died",
            "not_run": "the reference ran out of time",
            "unrepresentable": "the reference's result is not plain data",
            "no_entry": "the entry point cannot be found",
        }.get(str(status), "the reference's outcome is unreadable")
        dropped[reason] = dropped.get(reason, 0) + 1
        if status == "no_entry":
            missing[item["entry"]] = str(outcome.get("reason", ""))
    facts["cases"] = kept
    facts["dropped"] = dropped
    for entry in entry_points:
        if entry not in missing and not any(item["entry"] == entry for item in cases):
            facts["notes"].append(f"the visible tests never call {entry} and no input of the task names it")
    for entry, why in sorted(missing.items()):
        facts["notes"].append(f"the entry point {entry} cannot be found on the reference tree ({why})")
    if not kept:
        facts["error"] = "no usable input: " + (
            "; ".join(facts["notes"]) or ", ".join(f"{n} dropped: {why}" for why, n in dropped.items()) or "none made"
        )
    return facts


def _author_cases(spec: Any) -> list[dict[str, Any]]:
    """The spec's `inputs` as cases; a case without an entry point goes to every entry point (entry None)."""
    out = []
    for text in getattr(spec, "inputs", ()):
        raw = json.loads(text)
        try:
            args, kwargs = decode(raw["args"]), decode(raw.get("kwargs") or {})
        except Unrepresentable:
            continue
        if isinstance(args, list) and isinstance(kwargs, dict):
            out.append({"entry": raw.get("entry_point"), "args": args, "kwargs": kwargs})
    return out


def _cases(
    entry_points: Sequence[str],
    calls: Sequence[Mapping[str, Any]],
    author: Sequence[Mapping[str, Any]],
    *,
    seed: int,
    budget: int,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Traced seeds, the author's cases and generated ones for each entry point, distinct, in that order."""
    per_entry = max(20, budget // len(entry_points))
    out: list[dict[str, Any]] = []
    sources = {"traced": 0, "task": 0, "generated": 0}
    for entry in entry_points:
        traced = inputs.distinct(c for c in calls if c.get("entry") == entry and "args" in c)
        annotations = next((c.get("annotations") or {} for c in calls if c.get("entry") == entry), {})
        mine = [
            made
            for item in author
            if item["entry"] in (entry, None) and (made := inputs.case(entry, item["args"], item["kwargs"])) is not None
        ]
        seeds = inputs.distinct([*traced, *mine])
        generated = inputs.generate(
            entry, seeds, count=max(0, per_entry - len(seeds)), seed=seed, annotations=annotations
        )
        sources["traced"] += len(inputs.distinct(traced))
        sources["task"] += len(seeds) - len(inputs.distinct(traced))
        sources["generated"] += len(generated)
        out.extend(inputs.distinct([*seeds, *generated]))
    return out, sources
