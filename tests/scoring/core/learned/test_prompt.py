"""The critic's prompt and the export rows built from it."""

import json

import pytest

from scoring.core.learned.prompt import (
    CRITERIA,
    build_messages,
    build_target,
    pairwise_row,
    sft_row,
    system_prompt,
)
from scoring.core.learned.verdict import parse_verdict

TASK = {"name": "gcd", "test_command": "python -m pytest -q tests", "benchmark_command": "python bench/run.py"}
DIFF = (
    "--- a/gcd.py\n+++ b/gcd.py\n@@ -1,2 +1,2 @@\n"
    " def gcd(a, b):\n-    return a\n+    return b and gcd(b, a % b) or a\n"
)


def make_result(correctness=0.5):
    return {
        "task": "gcd",
        "final_score": 0.62,
        "flags": ["regression", "critic_disagrees"],
        "comments": "the critic wrote this",
        "human": {"subscores": {"correctness": 0.1}, "final_score": 0.1, "labels": 1, "comment": "secret label"},
        "subscores": {
            "correctness": {
                "score": correctness,
                "confidence": 0.95,
                "rationale": ["Step: correctness. 1 of 2 F2P tests pass. Score 0.5."],
                "evidence": {
                    "f2p": {"passed": ["tests/test_gcd.py::test_basic"], "failed": ["tests/test_gcd.py::test_zero"]},
                    "hidden": {"passed": 3, "failed": ["hidden/test_h.py::test_secret_case"]},
                    "critic": {"comment": "earlier critic view", "subscores": {"correctness": 0.9}},
                },
            },
            "style": {
                "score": 0.8,
                "confidence": 0.9,
                "rationale": ["Step: style. One new pylint message."],
                "evidence": {"introduced": [{"symbol": "unused-import", "path": "gcd.py", "line": 1}]},
            },
            "performance": {"score": None, "confidence": 1.0, "rationale": ["Step: performance. No benchmark."]},
            "security": {"score": 1.0, "confidence": 0.9, "rationale": [], "evidence": {"findings": []}},
        },
        "meta": {"timings_s": {"total": 3.2}},
    }


def user_text(**kwargs):
    messages = build_messages(task=TASK, diff=kwargs.pop("diff", DIFF), result=kwargs.pop("result", make_result()))
    assert [m["role"] for m in messages] == ["system", "user"]
    return messages[1]["content"]


def test_prompt_shows_task_measured_scores_rationale_and_failing_test_names():
    text = user_text()
    assert "Task: gcd" in text
    assert "Test command: python -m pytest -q tests" in text
    assert "Benchmark command: python bench/run.py" in text
    assert "[correctness] score 0.5, confidence 0.95" in text
    assert "Step: correctness. 1 of 2 F2P tests pass." in text
    assert "tests/test_gcd.py::test_zero" in text
    assert "symbol=unused-import" in text
    assert "[performance] score null" in text
    assert "Flags: regression" in text
    assert DIFF.strip() in text


def test_hidden_test_names_never_reach_the_prompt_only_their_counts():
    text = user_text()
    assert "test_secret_case" not in text
    assert "evidence hidden.failed: 1 item" in text
    assert "evidence hidden.passed: 3" in text


def test_human_label_comments_and_the_critics_own_view_are_left_out():
    text = user_text()
    for leaked in ("secret label", "the critic wrote this", "earlier critic view", "critic_disagrees", "0.62"):
        assert leaked not in text


def test_same_result_gives_the_same_prompt_whatever_the_key_order():
    result = make_result()
    shuffled = json.loads(json.dumps(result, sort_keys=True))
    shuffled["subscores"]["correctness"]["evidence"] = dict(
        reversed(result["subscores"]["correctness"]["evidence"].items())
    )
    assert build_messages(task=TASK, diff=DIFF, result=result) == build_messages(task=TASK, diff=DIFF, result=shuffled)


def test_long_diff_is_cut_at_a_line_boundary_with_a_marker_saying_how_much():
    lines = [f"+line {i:04d}\n" for i in range(2000)]
    diff = "--- a/x.py\n+++ b/x.py\n@@ -0,0 +1,2000 @@\n" + "".join(lines)
    text = build_messages(task=TASK, diff=diff, result=make_result(), diff_budget=500)[1]["content"]
    kept = text.split("```diff\n", 1)[1]
    assert "[diff truncated:" in kept
    body, marker = kept.split("... [diff truncated: ")
    assert body.endswith("\n") and len(body) <= 500
    cut = len(diff) - len(body)
    assert marker.startswith(f"{cut} more characters")


def test_diff_that_contains_a_code_fence_stays_inside_its_block():
    diff = "--- a/README.md\n+++ b/README.md\n@@ -1 +1,3 @@\n+```python\n+print(1)\n+```\n"
    text = user_text(diff=diff)
    assert "````diff\n" in text and text.rstrip().endswith("````")


def test_many_failing_tests_are_capped_with_a_count():
    result = make_result()
    result["subscores"]["correctness"]["evidence"] = {"f2p": {"failed": [f"t::test_{i}" for i in range(40)]}}
    text = user_text(result=result)
    assert "evidence f2p.failed: 40: t::test_0; t::test_1" in text
    assert "+35 more" in text and "t::test_39" not in text


def test_criterion_missing_from_the_result_is_reported_as_such():
    result = make_result()
    del result["subscores"]["security"]
    assert "[security] not reported" in user_text(result=result)


def test_system_prompt_names_every_criterion_and_the_comment_key():
    text = system_prompt()
    for key in (*CRITERIA, "comment"):
        assert f'"{key}"' in text


def test_target_ends_with_a_verdict_that_parses_back_to_the_same_scores():
    target = build_target(
        subscores={"correctness": 0.8, "style": 1, "security": 0.25},
        comment="Handle b == 0\nbefore recursing.",
        reasoning=["Step: tests. 3 of 4 pass.", "", "Step: style is clean."],
    )
    lines = target.splitlines()
    assert lines[:2] == ["Step: tests. 3 of 4 pass.", "Step: style is clean."]
    assert json.loads(lines[-1]) == {
        "correctness": 0.8,
        "style": 1.0,
        "performance": None,
        "security": 0.25,
        "comment": "Handle b == 0 before recursing.",
    }
    verdict = parse_verdict(target)
    assert verdict.subscores == {"correctness": 0.8, "style": 1.0, "performance": None, "security": 0.25}
    assert verdict.reasoning == ("Step: tests. 3 of 4 pass.", "Step: style is clean.")


@pytest.mark.parametrize(
    "subscores",
    [{"correctness": 1.2}, {"style": -0.1}, {"security": float("nan")}, {"correctness": True}, {"speed": 0.5}],
)
def test_target_refuses_scores_the_critic_must_never_learn(subscores):
    with pytest.raises(ValueError):
        build_target(subscores=subscores, comment="", reasoning=[])


def test_sft_row_is_a_chat_whose_prompt_is_exactly_build_messages():
    result = make_result(correctness=0.5)
    row = sft_row(
        task=TASK,
        diff=DIFF,
        result=result,
        subscores={"correctness": 0.25, "style": 1.0, "performance": None, "security": 1.0},
        comment="Zero is not handled.",
        split="val",
        extra={"patch_id": 7, "split": "overridden"},
    )
    assert row["messages"][:2] == build_messages(task=TASK, diff=DIFF, result=result)
    assert row["messages"][2]["role"] == "assistant"
    assert parse_verdict(row["messages"][2]["content"]).subscores["correctness"] == 0.25
    assert row["split"] == "val" and row["task"] == "gcd" and row["source"] == "human" and row["patch_id"] == 7
    assert row["execution"] == {"correctness": 0.5, "style": 0.8, "performance": None, "security": 1.0}
    # The default reasoning ties the judged score to what the tools measured.
    assert "Step: correctness. The tools measured 0.5; judged 0.25." in row["messages"][2]["content"]
    with pytest.raises(ValueError, match="source"):
        sft_row(task=TASK, diff=DIFF, result=result, subscores={}, comment="", split="val", source="model")


def test_pairwise_row_puts_the_better_patch_in_chosen_under_a_shared_task_prompt():
    row = pairwise_row(
        task=TASK,
        chosen_diff=DIFF,
        rejected_diff="--- a/x\n+++ b/x\n",
        chosen_score=0.9,
        rejected_score=0.4,
        split="train",
    )
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert "Task: gcd" in row["prompt"][1]["content"]
    assert row["chosen"][0]["role"] == "assistant" and "return b and gcd" in row["chosen"][0]["content"]
    assert "return b and gcd" not in row["rejected"][0]["content"]
    assert row["margin"] == pytest.approx(0.5) and row["split"] == "train"
    with pytest.raises(ValueError):
        pairwise_row(task=TASK, chosen_diff="a", rejected_diff="b", chosen_score=0.4, rejected_score=0.4, split="train")


def test_the_prompt_judges_the_registry_criteria_not_a_list_of_its_own():
    import inspect

    from scoring.core.critics import registry
    from scoring.core.learned import prompt

    for function in (prompt.system_prompt, prompt.build_messages):
        assert inspect.signature(function).parameters["criteria"].default is registry.CRITERIA
    assert all(f'"{name}"' in prompt.system_prompt() for name in registry.CRITERIA)
