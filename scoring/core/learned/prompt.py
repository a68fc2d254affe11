"""The one prompt builder of the learned critic, and the rows that export writes for training.

Export, training and inference all call `build_messages`, so the critic is trained on exactly the text it later
sees. The prompt holds the task, what the tools measured (scores, confidences, rationale, a compact summary of the
evidence) and the diff, truncated past a character budget. It leaves out whatever the critic itself or a human
contributed (the human label, `comments`, the critic's own evidence and the `critic_disagrees` flag): those would
leak the answer into training rows and would differ between an exported row and a fresh inference.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from scoring.core.aggregate.route import CRITIC_DISAGREES
from scoring.core.critics import discriminator

# The criteria the critic judges, in prompt order, are the critics registry's: a fifth critic is judged by the
# learned critic too (and its exported rows carry it) without an edit here.
from scoring.core.critics.registry import CRITERIA

#: Evidence key under which the pipeline records the learned critic's view; never shown back to the critic.
CRITIC_EVIDENCE_KEY = "critic"

#: The flag the critic's own view raises; left out of the prompt for the same reason.
CRITIC_FLAG = CRITIC_DISAGREES

#: Whose verdict an sft row teaches: the reviewers' consensus, or the execution-graded subscores.
SOURCES: tuple[str, ...] = ("human", "execution")

#: Characters of diff kept in the prompt; the rest is replaced by a marker that says how much was cut.
DIFF_CHAR_BUDGET = 6000

_MAX_STEPS = 8  # rationale steps shown per criterion
_MAX_FIELDS = 12  # evidence lines shown per criterion
_MAX_ITEMS = 5  # list items shown per evidence field (failing test names, findings)
_MAX_TEXT = 160  # characters of one shown string
_MAX_DEPTH = 2  # nested evidence mappings flattened into dotted keys up to this depth

_SYSTEM_TEMPLATE = """\
You are a code review critic for patches written by an automated agent. You are given a task, what automated \
tools measured on the patch (tests run in a sandbox, pylint, a benchmark, bandit) and the patch itself.
Judge the patch on each criterion with a number from 0 (bad) to 1 (good): {criteria}.
Trust what execution measured; add what the tools cannot see (cheating, hard-coded answers, fragile code).
Think in short steps, one per line, each starting with "Step:".
Then write, alone on the last line, one JSON object with exactly these keys: {keys}. Each criterion is a number \
from 0 to 1, or null when it cannot be judged; "comment" is one or two sentences a developer can act on."""

#: The system message of the discriminator's training rows: one call of the patched code, agree or not.
DISCRIMINATOR_SYSTEM = """\
You check a patch written by an automated agent against a correct solution of the same task, which you cannot \
see. You are given the task, the patch and one call of a function of the patched code.
Decide whether the patched function behaves like the correct solution on that call: the same return value and \
the same arguments afterwards, or an exception where the correct solution raises one.
Write, alone on the last line, one JSON object: {"agrees": true} or {"agrees": false}."""

#: The `source` of a discriminator row (its label is what execution found, never a human's view).
DISCRIMINATOR_SOURCE = "discriminator"

_PAIRWISE_SYSTEM = (
    "You are a software engineer. Write a unified diff against the task's repository that makes its tests pass "
    "without editing the tests."
)


def system_prompt(criteria: Sequence[str] = CRITERIA) -> str:
    """Return the critic's system message: its role and the exact output contract."""
    keys = ", ".join(f'"{name}"' for name in (*criteria, "comment"))
    return _SYSTEM_TEMPLATE.format(criteria=", ".join(criteria), keys=keys)


def build_messages(
    *,
    task: Mapping[str, Any],
    diff: str,
    result: Mapping[str, Any],
    criteria: Sequence[str] = CRITERIA,
    diff_budget: int = DIFF_CHAR_BUDGET,
) -> list[dict[str, str]]:
    """Return the critic's chat input `[system, user]` for one patch; the same inputs give the same text.

    `task` is a task spec mapping (`name`, `test_command`, ...), `result` a Result (docs/contract.md) as JSON data.
    """
    user = "\n".join(
        [
            *_task_lines(task),
            _flags_line(result),
            "",
            "Measured by the tools:",
            *_measured_lines(result, criteria),
            "",
            "Patch:",
            _fenced(_truncate_diff(diff, diff_budget), "diff"),
        ]
    )
    return [{"role": "system", "content": system_prompt(criteria)}, {"role": "user", "content": user}]


def build_target(
    *,
    subscores: Mapping[str, float | None],
    comment: str,
    reasoning: Sequence[str],
    criteria: Sequence[str] = CRITERIA,
) -> str:
    """Return the critic's expected answer: reasoning steps, one per line, then the JSON verdict on the last line.

    A criterion missing from `subscores` becomes null. Raises ValueError on an unknown criterion or a score that
    is not a number in [0, 1]: the export must never teach the critic an invalid verdict.
    """
    unknown = set(subscores) - set(criteria)
    if unknown:
        raise ValueError(f"unknown criteria {sorted(unknown)}; expected {list(criteria)}")
    verdict: dict[str, Any] = {}
    for name in criteria:
        score = subscores.get(name)
        if score is not None and not (_is_number(score) and 0.0 <= score <= 1.0):
            raise ValueError(f"{name}: {score!r} is not a number in [0, 1]")
        verdict[name] = None if score is None else round(float(score), 3)
    verdict["comment"] = _one_line(comment)
    steps = [_one_line(step) for step in reasoning if step.strip()]
    return "\n".join([*steps, json.dumps(verdict, ensure_ascii=False)])


def default_reasoning(
    *,
    result: Mapping[str, Any],
    subscores: Mapping[str, float | None],
    criteria: Sequence[str] = CRITERIA,
) -> list[str]:
    """Return reasoning steps that tie each judged subscore to what the tools measured, for rows without any."""
    steps = []
    flags = _shown_flags(result)
    if flags:
        steps.append(f"Step: flags raised by the tools: {', '.join(flags)}.")
    for name in criteria:
        measured = _subscore(result, name).get("score")
        seen = "could not measure it" if measured is None else f"measured {_number(measured)}"
        judged = subscores.get(name)
        verdict = "cannot be judged" if judged is None else f"judged {_number(judged)}"
        steps.append(f"Step: {name}. The tools {seen}; {verdict}.")
    return steps


def sft_row(
    *,
    task: Mapping[str, Any],
    diff: str,
    result: Mapping[str, Any],
    subscores: Mapping[str, float | None],
    comment: str,
    split: str,
    reasoning: Sequence[str] | None = None,
    source: str = "human",
    extra: Mapping[str, Any] | None = None,
    criteria: Sequence[str] = CRITERIA,
) -> dict[str, Any]:
    """Return one `sft` JSONL row in TRL's conversational language-modeling format (`messages`).

    The assistant message is `build_target` of the given subscores (`source` says whose: "human" labels or the
    "execution"-graded verdict). `execution` keeps what the tools measured, which eval_critic compares the
    critic's correctness with. `extra` adds fields (ids, versions); the fixed keys win over it.
    """
    if source not in SOURCES:
        raise ValueError(f"source {source!r} is not one of {SOURCES}")
    if reasoning is None:
        reasoning = default_reasoning(result=result, subscores=subscores, criteria=criteria)
    target = build_target(subscores=subscores, comment=comment, reasoning=reasoning, criteria=criteria)
    row = dict(extra or {})
    row.update(
        messages=[
            *build_messages(task=task, diff=diff, result=result, criteria=criteria),
            {"role": "assistant", "content": target},
        ],
        split=split,
        task=str(task.get("name", "")),
        source=source,
        execution={name: _subscore(result, name).get("score") for name in criteria},
    )
    return row


def discriminator_messages(*, task: Mapping[str, Any], diff: str, entry: str, call: str) -> list[dict[str, str]]:
    """The chat input `[system, user]` of a discriminator row: the task, the patch, the one call to judge.

    No Result: its rationale cites the discriminator's counterexamples, which would give the answer away.
    """
    user = "\n".join(
        [
            *_task_lines(task),
            f"Entry point: {entry}",
            f"Call: {_one_line(call)}",
            "",
            "Patch:",
            _fenced(_truncate_diff(diff, DIFF_CHAR_BUDGET), "diff"),
        ]
    )
    return [{"role": "system", "content": DISCRIMINATOR_SYSTEM}, {"role": "user", "content": user}]


def discriminator_row(
    *,
    task: Mapping[str, Any],
    diff: str,
    entry: str,
    call: str,
    agrees: bool,
    split: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return one `discriminator` JSONL row (TRL's conversational `messages`): does the patch agree with the
    reference on this call? `agrees` is what the sandboxed run and the harness's comparison found."""
    if not isinstance(agrees, bool):
        raise ValueError(f"agrees must be true or false, got {agrees!r}")
    row = dict(extra or {})
    row.update(
        messages=[
            *discriminator_messages(task=task, diff=diff, entry=entry, call=call),
            {"role": "assistant", "content": json.dumps({"agrees": agrees})},
        ],
        split=split,
        task=str(task.get("name", "")),
        source=DISCRIMINATOR_SOURCE,
        entry_point=entry,
        call=call,
        agrees=agrees,
    )
    return row


def pairwise_row(
    *,
    task: Mapping[str, Any],
    chosen_diff: str,
    rejected_diff: str,
    chosen_score: float,
    rejected_score: float,
    split: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return one `pairwise` JSONL row in TRL's conversational preference format (`prompt`, `chosen`, `rejected`).

    Both patches answer the same task, so the shared prompt is the task and the completions are the diffs; the
    human final scores and their margin travel along for filtering. Raises ValueError if `chosen` is not better.
    """
    if not chosen_score > rejected_score:
        raise ValueError(f"chosen score {chosen_score} must exceed rejected score {rejected_score}")
    row = dict(extra or {})
    row.update(
        prompt=[
            {"role": "system", "content": _PAIRWISE_SYSTEM},
            {"role": "user", "content": "\n".join(_task_lines(task))},
        ],
        chosen=[{"role": "assistant", "content": _fenced(chosen_diff, "diff")}],
        rejected=[{"role": "assistant", "content": _fenced(rejected_diff, "diff")}],
        split=split,
        task=str(task.get("name", "")),
        chosen_score=chosen_score,
        rejected_score=rejected_score,
        margin=round(chosen_score - rejected_score, 6),
    )
    return row


def _task_lines(task: Mapping[str, Any]) -> list[str]:
    """The task header shared by the critic prompt and the pairwise prompt."""
    lines = [f"Task: {task.get('name', '')}", f"Test command: {task.get('test_command', '')}"]
    if task.get("hidden_tests") or task.get("hidden_test_command"):
        lines.append("Hidden tests: yes (names withheld)")
    if task.get("benchmark_command"):
        lines.append(f"Benchmark command: {task['benchmark_command']}")
    return lines


def _shown_flags(result: Mapping[str, Any]) -> list[str]:
    return sorted(flag for flag in result.get("flags", ()) if flag != CRITIC_FLAG)


def _flags_line(result: Mapping[str, Any]) -> str:
    return f"Flags: {', '.join(_shown_flags(result)) or 'none'}"


def _subscore(result: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    return (result.get("subscores") or {}).get(name) or {}


def _measured_lines(result: Mapping[str, Any], criteria: Sequence[str]) -> Iterator[str]:
    """Per criterion: score and confidence, the rationale steps, then a few evidence fields."""
    for name in criteria:
        sub = _subscore(result, name)
        if not sub:
            yield f"[{name}] not reported"
            continue
        yield f"[{name}] score {_number(sub.get('score'))}, confidence {_number(sub.get('confidence'))}"
        steps = [str(step) for step in sub.get("rationale", ())]
        yield from (f"  {_shorten(step, 2 * _MAX_TEXT)}" for step in steps[:_MAX_STEPS])
        if len(steps) > _MAX_STEPS:
            yield f"  (+{len(steps) - _MAX_STEPS} more steps)"
        evidence = {k: v for k, v in (sub.get("evidence") or {}).items() if k != CRITIC_EVIDENCE_KEY}
        if isinstance(evidence.get("discriminator"), Mapping):
            # The per-input verdicts are the answers of the `discriminator` export's rows, never their prompt.
            evidence["discriminator"] = discriminator.client_evidence(evidence["discriminator"])
        fields = list(_flatten(evidence, ""))
        for key, value in fields[:_MAX_FIELDS]:
            yield f"  evidence {key}: {_describe(value, hidden='hidden' in key.lower())}"
        if len(fields) > _MAX_FIELDS:
            yield f"  (+{len(fields) - _MAX_FIELDS} more evidence fields)"


def _flatten(evidence: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    """Yield (dotted key, value) pairs in sorted key order, nested mappings opened up to _MAX_DEPTH levels."""
    for key in sorted(evidence, key=str):
        value, name = evidence[key], f"{prefix}{key}"
        if isinstance(value, Mapping) and value and name.count(".") < _MAX_DEPTH - 1:
            yield from _flatten(value, f"{name}.")
        else:
            yield name, value


def _describe(value: Any, *, hidden: bool) -> str:
    """A compact, deterministic rendering of one evidence value; hidden-test values keep counts only.

    Hidden test names must not reach the critic, because its comment is shown to API clients.
    """
    if isinstance(value, list | tuple):
        if hidden or not value:
            return _count(len(value), "item", "items")
        shown = "; ".join(_item(item) for item in value[:_MAX_ITEMS])
        more = f"; +{len(value) - _MAX_ITEMS} more" if len(value) > _MAX_ITEMS else ""
        return f"{len(value)}: {shown}{more}"
    if isinstance(value, Mapping):
        return _count(len(value), "entry", "entries") if hidden else _item(value)
    if hidden and isinstance(value, str):
        return "(withheld)"
    return _item(value)


def _item(value: Any) -> str:
    if isinstance(value, Mapping):
        pairs = [f"{key}={_scalar(value[key])}" for key in sorted(value, key=str)]
        return _shorten(", ".join(pairs), 2 * _MAX_TEXT)
    return _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if _is_number(value):
        return _number(value)
    if isinstance(value, list | tuple | Mapping):
        return f"({_count(len(value), 'item', 'items')})"
    return _shorten(str(value), _MAX_TEXT)


def _count(n: int, singular: str, plural: str) -> str:
    return f"{n} {singular if n == 1 else plural}"


def _number(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _shorten(text: str, limit: int) -> str:
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _truncate_diff(diff: str, budget: int) -> str:
    """Keep whole lines of `diff` up to `budget` characters and say how much was cut."""
    if len(diff) <= budget:
        return diff
    cut = diff.rfind("\n", 0, budget) + 1 or budget
    rest = diff[cut:]
    return f"{diff[:cut]}... [diff truncated: {len(rest)} more characters, {rest.count(chr(10)) + 1} more lines]"


def _fenced(text: str, language: str) -> str:
    """Fence `text` as Markdown code with a fence longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text.rstrip(chr(10))}\n{fence}"
