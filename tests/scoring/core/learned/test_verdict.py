"""Parsing the critic's answer: the last JSON object, validated, or a clear VerdictError. Never a guess."""

import dataclasses

import pytest

from scoring.core.learned.verdict import Verdict, VerdictError, parse_agreement, parse_verdict

GOOD = '{"correctness": 0.8, "style": 1, "performance": null, "security": 0.5, "comment": "Handle zero."}'


def test_reasoning_lines_then_json_give_scores_comment_and_reasoning():
    verdict = parse_verdict(f"Step: tests pass.\n\n  Step: no new lint.  \n{GOOD}")
    assert verdict.subscores == {"correctness": 0.8, "style": 1.0, "performance": None, "security": 0.5}
    assert verdict.comment == "Handle zero."
    assert verdict.reasoning == ("Step: tests pass.", "Step: no new lint.")
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.comment = "changed"


def test_prose_after_the_json_is_ignored():
    verdict = parse_verdict(f"Step: ok.\n{GOOD}\nI hope this helps!")
    assert verdict.subscores["correctness"] == 0.8


def test_the_last_of_several_json_objects_is_the_verdict():
    earlier = GOOD.replace("0.8", "0.1")
    verdict = parse_verdict(f'Step: evidence {{"f2p": 3}}.\n{earlier}\nStep: on reflection.\n{GOOD}')
    assert verdict.subscores["correctness"] == 0.8
    assert verdict.reasoning[0] == 'Step: evidence {"f2p": 3}.'


def test_an_invalid_last_object_is_an_error_even_when_an_earlier_one_was_valid():
    with pytest.raises(VerdictError, match="missing"):
        parse_verdict(f'{GOOD}\n{{"correctness": 0.2}}')


def test_output_without_json_is_an_error_that_quotes_the_output():
    with pytest.raises(VerdictError, match=r"no JSON object.*the patch looks fine"):
        parse_verdict("Step: the patch looks fine")


def test_truncated_json_is_an_error():
    with pytest.raises(VerdictError, match="no JSON object"):
        parse_verdict('Step: ok.\n{"correctness": 0.8, "style": 1, "perfor')


@pytest.mark.parametrize(
    ("value", "message"),
    [("1.5", "outside"), ("-0.2", "outside"), ("NaN", "outside"), ("true", "not a number"), ('"0.7"', "not a number")],
)
def test_scores_that_are_not_numbers_in_range_are_errors(value, message):
    with pytest.raises(VerdictError, match=f"correctness.*{message}"):
        parse_verdict(GOOD.replace('"correctness": 0.8', f'"correctness": {value}'))


def test_missing_and_unknown_keys_are_named_in_the_error():
    text = '{"correctness": 0.8, "style": 1, "security": 0.5, "comment": "x", "final": 0.7}'
    with pytest.raises(VerdictError, match=r"missing \['performance'\], unknown \['final'\]"):
        parse_verdict(text)


def test_comment_must_be_a_string():
    with pytest.raises(VerdictError, match="comment must be a string"):
        parse_verdict(GOOD.replace('"Handle zero."', "3"))


def test_a_nested_object_is_never_taken_for_the_verdict():
    with pytest.raises(VerdictError, match="unknown \\['detail'\\]"):
        parse_verdict(GOOD[:-1] + ', "detail": {"correctness": 0.1}}')


def test_criteria_can_be_chosen_by_the_caller():
    verdict = parse_verdict('{"readability": 0.4, "comment": ""}', criteria=("readability",))
    assert verdict == Verdict(subscores={"readability": 0.4}, comment="", reasoning=())
    assert verdict.to_json() == {"subscores": {"readability": 0.4}, "comment": "", "reasoning": []}


@pytest.mark.parametrize(("text", "agrees"), [('{"agrees": true}', True), ('Step: x.\n{"agrees": false}', False)])
def test_a_discriminator_answer_is_the_last_json_object_true_or_false(text, agrees):
    assert parse_agreement(text) is agrees


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("it agrees", "no JSON object"),
        ('{"agrees": 1}', "expected"),
        ('{"agrees": "yes"}', "expected"),
        ('{"agrees": true, "why": "same"}', "expected"),
        (GOOD, "expected"),
    ],
    ids=["prose", "number", "string", "extra-key", "criteria-verdict"],
)
def test_a_discriminator_answer_that_is_not_true_or_false_is_a_clear_error(text, message):
    with pytest.raises(VerdictError, match=message):
        parse_agreement(text)
