"""The discriminator on a task with a reference and no hidden tests: cheats are caught, honest fixes keep 1.0.

Every test scores real patches with the real pipeline parts: pytest and the probe run in bubblewrap, and the
comparison happens in the harness.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from scoring.core.critics import discriminator
from scoring.core.critics.correctness.critic import CorrectnessCritic
from scoring.core.critics.discriminator import compare, inputs, probe, shrink
from scoring.core.intake.spec import parse_spec
from scoring.core.trees import pack_tree
from tests.scoring.core.fixtures import intervals_task as it
from tests.scoring.core.fixtures.gcd_task import CountingRunner

VISIBLE_ANSWERS = (
    "    if intervals == [(1, 3), (2, 5)]:\n"
    "        return [(1, 5)]\n"
    "    if intervals == [(5, 6), (1, 2)]:\n"
    "        return [(1, 2), (5, 6)]\n"
)
LOOKUP_TABLE = (
    "    table = {repr([]): [], repr([(1, 3), (2, 5)]): [(1, 5)], repr([(5, 6), (1, 2)]): [(1, 2), (5, 6)]}\n"
    "    if repr(intervals) in table:\n"
    "        return table[repr(intervals)]\n"
)


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> it.Task:
    return it.task(tmp_path_factory.mktemp("discriminator"))


def _step(result) -> str:
    return next(step for step in result.rationale if step.startswith("Step: discriminator."))


@pytest.mark.parametrize("source", [it.FIXED, it.FIXED_OTHER], ids=["reference-like", "written-differently"])
def test_honest_fix_keeps_a_full_score(task, source) -> None:
    result = it.evaluate(task, it.patch(source))
    assert result.score == 1.0
    assert "overfit" not in result.flags
    assert "agrees with the reference on every one" in _step(result)
    assert result.evidence["discriminator"]["disagree"] == 0
    assert result.evidence["discriminator"]["inputs"] >= 200


@pytest.mark.parametrize("body", [VISIBLE_ANSWERS, LOOKUP_TABLE], ids=["if-chain", "lookup-table"])
def test_hard_coded_visible_answers_are_caught_and_flagged_overfit(task, body) -> None:
    result = it.evaluate(task, it.patch(it.hardcoded(body)))
    assert result.evidence["f2p"] == {"passing": 1, "total": 1}  # the visible tests alone would give 1.0
    assert result.score < 0.5
    assert "overfit" in result.flags
    step = _step(result)
    assert "disagree" in step and "merge([" in step and "the reference" in step
    assert "Flagged overfit." in step
    smallest = result.evidence["discriminator"]["counterexamples"][0]
    assert smallest["call"].startswith("merge(")
    assert smallest["patch"].startswith("the patch ")


def test_no_op_gains_nothing(task) -> None:
    result = it.evaluate(task, it.patch(it.BUGGY + "\n# no change\n"))
    assert result.score == 0.0


@pytest.mark.parametrize(
    "wrapper",
    [
        "class Agreeable(list):\n    def __eq__(self, other):\n        return True\n",
        "class Agreeable:\n    def __init__(self, items):\n        self.items = items\n\n"
        "    def __eq__(self, other):\n        return True\n\n    def __ne__(self, other):\n        return False\n",
    ],
    ids=["list-subclass", "plain-object"],
)
def test_return_value_whose_eq_always_says_true_is_caught(task, wrapper) -> None:
    source = it.BUGGY.replace("def merge(", wrapper + "\n\ndef merge(").replace(
        "    return sorted(tuple(pair) for pair in intervals)", "    return Agreeable(list(intervals))"
    )
    result = it.evaluate(task, it.patch(source))
    assert result.evidence["f2p"] == {"passing": 1, "total": 1}  # the lie fools the visible tests
    assert result.score < 0.2
    assert "overfit" in result.flags
    assert "Agreeable(" in _step(result)


@pytest.mark.parametrize(
    "forger",
    [
        # At import: claim an empty list for every input, before the probe writes anything.
        "import glob\nfor _path in glob.glob('/sandbox/report/outputs.jsonl'):\n    pass\n"
        "with open('/sandbox/report/outputs.jsonl', 'a') as _out:\n"
        "    for _i in range(1000):\n"
        '        _out.write(\'{"id": %d, "status": "ok", "result": {"t": "list", "v": []}}\\n\' % _i)\n',
        # At exit: rewrite the outputs so that every input looks unrepresentable (to have them skipped).
        "import atexit\n\n\ndef _rewrite():\n    with open('/sandbox/report/outputs.jsonl', 'w') as out:\n"
        "        for i in range(1000):\n"
        '            out.write(\'{"id": %d, "status": "unrepresentable", "reason": "x"}\\n\' % i)\n\n\n'
        "atexit.register(_rewrite)\n",
    ],
    ids=["forged-lines-at-import", "exit-hook-rewrites-the-outputs"],
)
def test_forged_outputs_and_exit_hooks_decide_nothing(task, forger) -> None:
    source = it.hardcoded(VISIBLE_ANSWERS).replace('"""Merging closed intervals."""\n', '"""Merging."""\n' + forger)
    result = it.evaluate(task, it.patch(source))
    assert result.score < 0.5
    assert "overfit" in result.flags
    assert result.evidence["discriminator"]["inputs"] >= 200  # nothing was skipped on the patch's word


def test_mutating_the_arguments_is_compared_too(task) -> None:
    source = it.FIXED.replace("    merged = []\n", "    merged = []\n    intervals.reverse()\n")
    result = it.evaluate(task, it.patch(source))
    assert result.evidence["f2p"] == {"passing": 1, "total": 1}
    assert "overfit" in result.flags
    assert "leaves the arguments as" in _step(result)


@pytest.mark.parametrize(
    "hang",
    [
        "        while len(intervals) > 3:\n            pass\n",
        # Ignores the probe's alarm: only the harness's wall clock stops it.
        "        while len(intervals) > 3:\n            try:\n                time.sleep(0.05)\n"
        "            except BaseException:\n                pass\n",
    ],
    ids=["busy-loop", "swallows-the-alarm"],
)
def test_patch_that_hangs_where_the_reference_returns_fails_those_inputs(tmp_path, hang) -> None:
    task = it.task(tmp_path, timeout_s=8)
    source = "import time\n" + it.FIXED.replace("    merged = []\n", "    merged = []\n    if True:\n" + hang)
    started = time.monotonic()
    result = it.evaluate(task, it.patch(source))
    assert time.monotonic() - started < 60
    verdict = result.evidence["discriminator"]
    assert verdict["timeouts"] > 0
    assert verdict["disagree"] >= verdict["timeouts"]
    assert "overfit" in result.flags
    assert result.score < 1.0


HANGS_ON_NEGATIVES = it.BUGGY.replace(
    "    return sorted(", "    while any(start < 0 for start, _ in intervals):\n        pass\n    return sorted("
)


def test_a_base_that_hangs_on_some_inputs_is_a_valid_task(tmp_path) -> None:
    repo = {**it.REPO, "intervals/__init__.py": HANGS_ON_NEGATIVES}
    task = it.task(tmp_path, repo=repo, reference=it.make_diff({"intervals/__init__.py": it.FIXED}, base=repo))
    honest = it.evaluate(task, it.make_diff({"intervals/__init__.py": it.FIXED_OTHER}, base=repo))
    assert honest.score == 1.0
    started = time.monotonic()
    no_op = it.evaluate(task, it.make_diff({"intervals/__init__.py": HANGS_ON_NEGATIVES + "\n"}, base=repo))
    assert time.monotonic() - started < 60
    assert no_op.score == 0.0
    assert no_op.evidence["discriminator"]["timeouts"] > 0


def test_inputs_on_which_the_reference_hangs_are_dropped_and_its_exceptions_kept(tmp_path) -> None:
    hanging_reference = it.FIXED.replace(
        "    merged = []\n",
        "    merged = []\n    while any(list(pair) == [7777, 7778] for pair in intervals):\n        pass\n",
    )
    task = it.task(
        tmp_path,
        reference=it.make_diff({"intervals/__init__.py": hanging_reference}, base=it.REPO),
        inputs=[[[[7777, 7778]]], {"entry_point": "intervals:merge", "args": [[{"__tuple__": [3, 1]}]]}],
    )
    result = it.evaluate(task, it.patch(it.FIXED_OTHER))
    verdict = result.evidence["discriminator"]
    assert verdict["dropped"].get("the reference hangs", 0) >= 1
    assert verdict["sources"]["task"] == 2
    assert result.score == 1.0  # the honest fix is not blamed for the reference's hang
    assert "the reference hangs" in _step(result)
    # merge([(3, 1)]) raises ValueError on the reference: the base's answer [(3, 1)] disagrees with it.
    no_op = it.evaluate(task, it.patch(it.BUGGY + "\n"))
    assert any("raises ValueError" in c["reference"] for c in no_op.evidence["discriminator"]["counterexamples"])


def test_task_inputs_and_reference_outputs_are_computed_once_per_task(task) -> None:
    it.evaluate(task, it.patch(it.FIXED))  # makes sure the task's facts are cached
    runner = CountingRunner()
    result = it.evaluate(task, it.patch(it.FIXED_OTHER), run=runner)
    # The tests on the patched tree, the probe's run and its coverage run: no trace, no reference run.
    assert runner.calls == 3
    assert result.evidence["discriminator"]["seed"] == discriminator.DEFAULT_SEED


def test_the_same_seed_gives_the_same_inputs(tmp_path) -> None:
    seeds = [inputs.case("m:f", [[(1, 3), (2, 5)]], {}), inputs.case("m:f", [["a", "b"]], {"k": 2})]
    first = inputs.generate("m:f", seeds, count=150, seed=7)
    assert first == inputs.generate("m:f", seeds, count=150, seed=7)
    assert first != inputs.generate("m:f", seeds, count=150, seed=8)
    facts = [
        discriminator.task_facts(ctx)
        for root in ("a", "b")
        for ctx in [it.prepared(it.task(tmp_path / root), it.patch(it.FIXED)).__enter__()]
    ]
    assert [c["args"] for c in facts[0]["cases"]] == [c["args"] for c in facts[1]["cases"]]


def test_generated_inputs_respect_the_size_caps() -> None:
    big = [list(range(60)), "x" * 250, {str(i): i for i in range(60)}]
    seeds = [inputs.case("m:f", big, {})]
    cases = inputs.generate("m:f", seeds, count=200, seed=1)
    assert cases
    for case in cases:
        assert len(inputs.canonical(case)) <= inputs.MAX_CASE_CHARS
        assert all(len(v["v"]) <= inputs.MAX_ITEMS for v in case["args"]["v"] if isinstance(v, dict))


def test_without_a_reference_the_rationale_says_the_discriminator_did_not_run(tmp_path) -> None:
    spec, base, settings = it.task(tmp_path)
    result = it.evaluate((replace(spec, reference=None), base, settings), it.patch(it.hardcoded(VISIBLE_ANSWERS)))
    assert result.score == 1.0
    assert _step(result) == (
        "Step: discriminator. Did not run: the task has no reference solution, so the score rests on the tests alone."
    )
    assert result.evidence["discriminator"] == {
        "ran": False,
        "reason": "the task has no reference solution, so the score rests on the tests alone",
    }


def test_entry_points_that_cannot_be_found_are_named(tmp_path) -> None:
    task = it.task(tmp_path, entry_points=["intervals:nope"], inputs=[[[[1, 2]]]])
    result = it.evaluate(task, it.patch(it.FIXED))
    step = _step(result)
    assert step.startswith("Step: discriminator. Did not run: no usable input")
    assert "intervals:nope cannot be found on the reference tree" in step
    assert result.score == 1.0


def test_a_task_whose_tests_call_no_function_says_so(tmp_path) -> None:
    repo = {**it.REPO, "tests/test_merge.py": "def test_nothing():\n    assert True\n"}
    task = it.task(tmp_path, repo=repo, reference=it.make_diff({"intervals/__init__.py": it.FIXED}, base=repo))
    result = it.evaluate(task, it.make_diff({"intervals/__init__.py": it.FIXED}, base=repo))
    assert "Did not run: no entry point was found" in _step(result)


def test_results_that_are_not_plain_data_are_left_out_with_the_reason(tmp_path) -> None:
    odd_reference = it.FIXED.replace(
        "    return [tuple(pair) for pair in merged]",
        "    if len(merged) > 1:\n        return iter(merged)\n    return [tuple(pair) for pair in merged]",
    )
    task = it.task(tmp_path, reference=it.make_diff({"intervals/__init__.py": odd_reference}, base=it.REPO))
    result = it.evaluate(task, it.patch(it.FIXED))
    assert result.evidence["discriminator"]["dropped"].get("the reference's result is not plain data", 0) > 0
    assert "the reference's result is not plain data" in _step(result)
    assert result.score == 1.0


def test_a_reference_that_does_not_apply_is_refused(tmp_path) -> None:
    spec, base, settings = it.task(tmp_path)
    bad = tmp_path / "bad.diff"
    bad.write_text(it.make_diff({"intervals/__init__.py": it.FIXED}, base={"intervals/__init__.py": "other\n"}))
    with (
        it.prepared((spec, base, settings), it.patch(it.FIXED)) as ctx,
        pytest.raises(discriminator.ReferenceError, match="the reference diff does not apply"),
    ):
        _check(ctx, bad)


def test_a_reference_that_fails_the_visible_tests_is_refused(tmp_path) -> None:
    spec, base, settings = it.task(tmp_path)
    wrong = tmp_path / "wrong.diff"
    wrong.write_text(it.patch(it.FIXED.replace("if merged and start <= merged[-1][1]:", "if False:")))
    with it.prepared((spec, base, settings), it.patch(it.FIXED)) as ctx:
        _check(ctx, Path(spec.reference))  # the good one passes
        with pytest.raises(discriminator.ReferenceError, match="fails the visible tests"):
            _check(ctx, wrong)


@pytest.mark.parametrize("packed", [False, True], ids=["folder", "archive"])
def test_a_reference_given_as_files_overlays_the_base(tmp_path, packed) -> None:
    files = tmp_path / "reference-files" / "intervals"
    files.mkdir(parents=True)
    (files / "__init__.py").write_text(it.FIXED)
    reference = tmp_path / "reference-files"
    if packed:  # as the service stores a folder: a .tar.gz whose paths are relative to the tree
        reference = pack_tree(reference, tmp_path / "reference.tar.gz")
    spec, base, settings = it.task(tmp_path / "t")
    task = (replace(spec, reference=reference), base, settings)
    assert it.evaluate(task, it.patch(it.FIXED_OTHER)).score == 1.0
    assert "overfit" in it.evaluate(task, it.patch(it.hardcoded(VISIBLE_ANSWERS))).flags


def _check(ctx, reference: Path) -> None:
    discriminator.check_reference(
        spec=ctx.spec, reference_path=reference, base_dir=ctx.base_dir, settings=ctx.settings, run_command=ctx.run
    )


def test_spec_takes_entry_points_and_inline_inputs_and_keeps_them_in_its_stored_form() -> None:
    spec = parse_spec(
        {
            "name": "t",
            "test_command": "pytest",
            "entry_points": ["pkg.mod:f"],
            "inputs": [[1, 2], {"entry_point": "pkg.mod:f", "args": [3], "kwargs": {"k": 1}}],
        },
        api=True,
    )
    assert spec.entry_points == ("pkg.mod:f",)
    assert parse_spec(spec.to_json(), api=True) == spec
    assert spec.to_json()["inputs"][1] == {"entry_point": "pkg.mod:f", "args": [3], "kwargs": {"k": 1}}


TINY_DOMAIN = {
    "flags/__init__.py": (
        '"""Flags."""\n\n\ndef both(pair):\n    """True when both flags are set."""\n    return pair[0] or pair[1]\n'
    ),
    "tests/__init__.py": "",
    "tests/test_flags.py": "from flags import both\n\n\ndef test_both():\n    assert both((True, True))\n",
}


def test_perfect_agreement_on_few_inputs_is_healed_and_settled(tmp_path) -> None:
    fixed = TINY_DOMAIN["flags/__init__.py"].replace("pair[0] or pair[1]", "pair[0] and pair[1]")
    task = it.task(tmp_path, repo=TINY_DOMAIN, reference=it.make_diff({"flags/__init__.py": fixed}, base=TINY_DOMAIN))
    honest = it.make_diff({"flags/__init__.py": fixed.replace("pair[0] and pair[1]", "all(pair)")}, base=TINY_DOMAIN)
    with it.prepared(task, honest) as ctx:
        first = CorrectnessCritic().evaluate(ctx)
        assert first.evidence["discriminator"]["inputs"] < discriminator.FEW_INPUTS
        assert first.confidence < 0.7  # a doubt healing can act on
        healed = CorrectnessCritic().heal(ctx, first, budget_s=60)
    assert healed.confidence == first.evidence["discriminator"]["tests_confidence"]
    assert healed.score == 1.0
    assert healed.rationale[-1].startswith("Step: discriminator healing. No new input could be generated")


def test_healing_buys_more_inputs_when_agreement_rests_on_few(task, monkeypatch) -> None:
    monkeypatch.setattr(discriminator, "FEW_INPUTS", 700)
    with it.prepared(task, it.patch(it.FIXED_OTHER)) as ctx:
        first = CorrectnessCritic().evaluate(ctx)
        assert first.confidence == discriminator.FEW_INPUTS_CONFIDENCE
        healed = CorrectnessCritic().heal(ctx, first, budget_s=120)
    verdict = healed.evidence["discriminator"]
    assert verdict["inputs"] > first.evidence["discriminator"]["inputs"]
    assert verdict["disagree"] == 0 and verdict["healed"]
    assert healed.rationale[-1].startswith("Step: discriminator healing.")
    assert "more inputs (seeds 19" in healed.rationale[-1]


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Agreeable(list):
    def __eq__(self, other: object) -> bool:
        return True


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        ([(1, 5)], [(1, 5)], True),
        ([(1, 5)], [[1, 5]], False),  # a tuple is not a list
        (True, 1, False),  # True is not 1
        (1, 1.0, True),
        (0.1 + 0.2, 0.3, True),  # relative tolerance 1e-9
        ({3, 1, 2}, {1, 2, 3}, True),
        ({"b": 1, "a": 2}, {"a": 2, "b": 1}, True),
        (float("nan"), float("nan"), True),
        (Point(1, 2.0), Point(1, 2.0), True),  # objects: class and state
        (Point(1, 2.0), Point(1, 3.0), False),
        (Agreeable([1]), [2], False),  # a lying __eq__ is never asked
        (Agreeable([1]), [1], False),  # and a subclass is not the builtin it imitates
    ],
)
def test_outputs_compare_as_plain_data_in_the_harness(left, right, equal) -> None:
    assert compare.same(probe.encode(left), probe.encode(right)) is equal


def test_values_past_the_size_caps_or_without_a_stable_form_are_not_plain_data() -> None:
    for value in (list(range(probe.MAX_NODES + 1)), "x" * (probe.MAX_TEXT + 1), object(), lambda: 1):
        with pytest.raises(probe.Unrepresentable):
            probe.encode(value)


def test_inputs_on_which_the_reference_answers_differently_each_time_are_dropped(tmp_path) -> None:
    moody = "import random\n" + it.FIXED.replace(
        "    return [tuple(pair) for pair in merged]",
        "    if len(merged) > 1:\n        return [tuple(pair) for pair in merged] + [random.random()]\n"
        "    return [tuple(pair) for pair in merged]",
    )
    task = it.task(tmp_path, reference=it.make_diff({"intervals/__init__.py": moody}, base=it.REPO))
    result = it.evaluate(task, it.patch(it.FIXED))
    assert result.evidence["discriminator"]["dropped"]["the reference answers differently each time"] > 0
    assert result.score == 1.0


WORDS = {
    "words/__init__.py": '"""Words."""\n\n\ndef unique(words):\n    """Each word once."""\n    return words\n',
    "tests/__init__.py": "",
    "tests/test_words.py": "from words import unique\n\n\ndef test_unique():\n"
    "    assert sorted(unique(['a', 'b', 'a'])) == ['a', 'b']\n",
}


def test_an_honest_patch_that_iterates_a_set_like_the_reference_agrees_with_it(tmp_path) -> None:
    def module(body: str) -> str:
        return WORDS["words/__init__.py"].replace("    return words\n", body)

    reference = it.make_diff({"words/__init__.py": module("    return list(set(words))\n")}, base=WORDS)
    task = it.task(tmp_path, repo=WORDS, reference=reference)
    honest = it.make_diff({"words/__init__.py": module("    return list({word for word in words})\n")}, base=WORDS)
    result = it.evaluate(task, honest)
    assert "the reference answers differently each time" not in result.evidence["discriminator"]["dropped"]
    assert result.evidence["discriminator"]["inputs"] >= 100
    assert result.score == 1.0


#: Right on one or two intervals, wrong (no merging at all) from three on: its generated failing inputs are long.
WRONG_FROM_THREE = it.FIXED.replace(
    "    merged = []\n",
    "    if len(intervals) > 2:\n        return sorted(tuple(pair) for pair in intervals)\n    merged = []\n",
)


def _reference_merge(intervals):
    namespace: dict = {}
    exec(compile(it.FIXED, "reference", "exec"), namespace)  # noqa: S102 - the fixture's own reference
    return namespace["merge"](intervals)


def test_the_cited_counterexample_is_shrunk_to_a_minimal_failing_input(task, monkeypatch) -> None:
    monkeypatch.setattr(discriminator, "SHRINK_BUDGET_S", 120.0)  # the shrinker's result, not its time budget
    result = it.evaluate(task, it.patch(WRONG_FROM_THREE))
    verdict = result.evidence["discriminator"]
    smallest = verdict["counterexamples"][0]
    assert smallest["shrunk"] is True and verdict["shrink"]["steps"] >= 1
    # It started from the smallest generated input, which the evidence keeps beside it.
    assert verdict["counterexamples"][1]["call"] == verdict["shrink"]["from"] != smallest["call"]
    assert smallest["call"] == "merge([(0, 0), (0, 0), (0, 0)])"  # three intervals, every number at 0
    # Minimal: every one-step simplification of it is an input on which the patch is right.
    shrunk = inputs.case("intervals:merge", [[(0, 0)] * 3], {})
    for simpler in inputs.shrinks(shrunk):
        args = probe.decode(simpler["args"])
        assert len(args[0]) <= 2 or _reference_merge(*args) == sorted(args[0])
    step = _step(result)
    assert "merge([(0, 0), (0, 0), (0, 0)]): the patch returns" in step and "(shrunk in" in step
    assert "merge([(0, 0), (0, 0), (0, 0)])" in result.evidence["discriminator"]["input_verdicts"][0]["call"]
    # Cited, never counted: the agreement rate stays that of the task's fixed inputs.
    assert verdict["inputs"] == sum(counts["inputs"] for counts in verdict["per_entry"].values())


def test_shrinking_keeps_a_reference_answer_it_cannot_confirm_out_of_the_rationale(task, monkeypatch) -> None:
    # A reference whose second process answers otherwise (randomness, the clock) gives no counterexample.
    monkeypatch.setattr(shrink.ReferenceAnswers, "is_confirmed", lambda self, case: False)
    result = it.evaluate(task, it.patch(WRONG_FROM_THREE))
    verdict = result.evidence["discriminator"]
    assert "shrink" not in verdict and not verdict["counterexamples"][0].get("shrunk")


def test_shrink_candidates_are_smaller_simpler_values_of_the_same_type() -> None:
    item = inputs.case("m:f", [[(3, 7), (12, 20)], "abc", -5, {"k": [1]}], {"flag": True})
    candidates = inputs.shrinks(item)
    assert candidates and all(inputs.size(c) < inputs.size(item) for c in candidates)
    assert candidates == sorted(candidates, key=inputs.size)
    decoded = [probe.decode(c["args"]) for c in candidates]
    assert all(isinstance(d[0], list) and all(isinstance(t, tuple) and len(t) == 2 for t in d[0]) for d in decoded)
    assert [[], "abc", -5, {"k": [1]}] in decoded and [[(3, 7), (12, 20)], "", -5, {"k": [1]}] in decoded
    assert [[(3, 7), (12, 20)], "abc", 0, {"k": [1]}] in decoded
    assert [[(0, 7), (12, 20)], "abc", -5, {"k": [1]}] in decoded
    assert inputs.simpler(True) == [False] and inputs.simpler(-5) == [0, -2, -4, 5]
    assert inputs.shrinks(inputs.case("m:f", [0, "", []], {})) == []  # nothing simpler


#: An honest fix with a trap door no generated input opens: its four lines stay unreached.
TRAP_DOOR = it.FIXED.replace(
    "    merged = []\n",
    "    if intervals and intervals[0] == (123456, 654321):\n"
    "        hidden = list(intervals)\n"
    "        hidden.reverse()\n"
    "        hidden.append((0, 0))\n"
    "        return hidden\n"
    "    merged = []\n",
)
TRAP_LINES = [f"intervals/__init__.py:{n}" for n in (7, 8, 9, 10)]
#: Claims every line covered in each case's output line, with a signature it made up.
FORGED_CLAIM = """

def _forge():
    import json
    import sys

    try:
        cases = json.load(open(sys.argv[1]))
        with open(sys.argv[2], "a") as out:
            for case in cases:
                claim = [[0, n] for n in range(1, 40)]
                out.write(json.dumps({"id": case["id"], "status": "ok", "cov": claim, "sig": "0" * 64}) + "\\n")
    except Exception:
        pass


_forge()
"""
#: Reads the coverage plan (and its key) if it can, and signs a claim of every planned line.
KEY_THIEF = """

def _forge():
    import hashlib
    import hmac
    import json
    import sys

    try:
        plan = json.load(open(sys.argv[3]))
        cases = json.load(open(sys.argv[1]))
        names = sorted(plan["files"])
        with open(sys.argv[2], "a") as out:
            for case in cases:
                claim = sorted([i, n] for i, name in enumerate(names) for n in plan["files"][name])
                text = json.dumps([case["id"], claim], separators=(",", ":")).encode()
                sig = hmac.new(bytes.fromhex(plan["key"]), text, hashlib.sha256).hexdigest()
                out.write(json.dumps({"id": case["id"], "status": "ok", "cov": claim, "sig": sig}) + "\\n")
    except Exception:
        pass


_forge()
"""


def test_patched_lines_no_input_reaches_lower_the_confidence_and_are_named(task) -> None:
    result = it.evaluate(task, it.patch(TRAP_DOOR))
    verdict = result.evidence["discriminator"]
    assert verdict["disagree"] == 0 and result.score == 1.0  # coverage never changes a score
    reach = verdict["coverage"]
    assert reach["missed"] == TRAP_LINES and reach["reached"] == reach["lines"] - 4
    assert reach["reached"] < 0.8 * reach["lines"]
    assert result.confidence == discriminator.FEW_INPUTS_CONFIDENCE  # a doubt healing acts on
    step = _step(result)
    assert f"reached {reach['reached']} of the {reach['lines']} patched lines; never intervals/__init__.py:7" in step
    # The honest fix leaves no patched line unreached and keeps the tests' confidence.
    honest = it.evaluate(task, it.patch(it.FIXED))
    assert honest.evidence["discriminator"]["coverage"]["missed"] == []
    assert honest.confidence > discriminator.FEW_INPUTS_CONFIDENCE


def test_healing_aims_more_inputs_at_unreached_patched_lines(task) -> None:
    with it.prepared(task, it.patch(TRAP_DOOR)) as ctx:
        first = CorrectnessCritic().evaluate(ctx)
        healed = CorrectnessCritic().heal(ctx, first, budget_s=120)
    verdict = healed.evidence["discriminator"]
    assert verdict["healed"] and verdict["inputs"] > first.evidence["discriminator"]["inputs"]
    assert verdict["coverage"]["missed"] == TRAP_LINES  # no mutation guesses (123456, 654321)
    assert healed.rationale[-1].startswith("Step: discriminator healing.")
    assert "aimed at the unreached patched lines" in healed.rationale[-1]
    # The search was made: the tests' confidence is back, and the lines still unreached stay named.
    assert healed.confidence == verdict["tests_confidence"] and healed.score == 1.0


@pytest.mark.parametrize("forger", [FORGED_CLAIM, KEY_THIEF], ids=["made-up-signature", "stolen-plan-key"])
def test_a_patch_cannot_claim_coverage_its_inputs_did_not_earn(task, forger) -> None:
    result = it.evaluate(task, it.patch(TRAP_DOOR + forger))
    # Its forged lines also stand as its answers (the first line for an input wins), so it disagrees: what is
    # checked here is only that its claims of coverage count for nothing.
    reach = result.evidence["discriminator"]["coverage"]
    assert set(TRAP_LINES) <= set(reach["missed"]) and reach["reached"] < reach["lines"]


def test_probe_runs_fork_from_the_zygote_the_worker_already_has(tmp_path: Path) -> None:
    """The probe's runs lie in the worker's one runs folder: a discriminator call never starts a zygote of its own
    (each used to, about 0.25 s per call, and pushed the tests' zygote out)."""
    import functools

    from scoring.core.critics.discriminator.run import call_cases
    from scoring.core.sandbox import process as sandbox
    from scoring.core.sandbox import warm

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "lib.py").write_text("def double(x):\n    return 2 * x\n")
    case = {"id": 1, "entry": "lib:double", "args": probe.encode([3]), "kwargs": probe.encode({}), "cap_s": 5}
    warm.close_all()
    warm.stats.clear()
    try:
        run = functools.partial(sandbox.run, warm=True)
        for _ in range(3):
            outcomes = call_cases(
                run=run, tree=tree, cases=[case], work_root=tmp_path / "work", env_dir=None, budget_s=30
            )
            assert outcomes[1]["status"] == "ok" and probe.decode(outcomes[1]["result"]) == 6
        assert warm.stats["warm"] == 3
        assert len(warm._zygotes) == 1
    finally:
        warm.close_all()


# What a patch could read of the reference's answers while the probe calls it: what the probe was told (its cases
# file, decoded with the probe's own `decode` through `__main__`). It wins when the probe is given whole cases.
ANSWERS_FROM_WHAT_THE_PROBE_WAS_TOLD = """\
    import json as _json, sys as _sys
    try:
        _decode = _sys.modules["__main__"].decode  # in the probe's process; the tests' has none
        with open("/sandbox/report/cases.json") as _handle:
            for _case in _json.load(_handle):
                if "expected" in _case and _decode(_case["args"]) == [intervals]:
                    return _decode(_case["expected"]["result"])
    except Exception:
        pass
"""


@pytest.mark.parametrize("warm_run", [False, True], ids=["cold", "warm"])
def test_a_patch_cannot_read_the_reference_answers_while_it_is_probed(tmp_path: Path, warm_run) -> None:
    import functools

    from scoring.core.sandbox import process as sandbox
    from scoring.core.sandbox import warm

    task = it.task(tmp_path / "task")
    settings = task[2]
    source = it.hardcoded(ANSWERS_FROM_WHAT_THE_PROBE_WAS_TOLD + VISIBLE_ANSWERS)
    warm.close_all()
    warm.stats.clear()
    try:
        result = it.evaluate(task, it.patch(source), run=functools.partial(sandbox.run, warm=warm_run))
        assert (warm.stats["warm"] > 0) is warm_run
    finally:
        warm.close_all()
    assert result.score < 0.5
    assert "overfit" in result.flags
    # The answers exist, in the harness: the reference's outputs in the task cache.
    stored = [json.loads(p.read_text()) for p in settings.cache_root.rglob("discriminator-*.json")]
    facts = [data for data in stored if isinstance(data, dict) and data.get("cases")]
    assert facts and all("expected" in case for fact in facts for case in fact["cases"])
