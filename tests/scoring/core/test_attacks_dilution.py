"""Dilution: a patch pads itself with harmless code so that its lint or security findings weigh less.

Before the fix the style score was the weighted pylint messages over the statements the patch added: one undefined
name in the gcd fix scored style 0.08, the same patch plus 300 `PAD_i = i` lines 0.96. Padding must never raise a
score, so style now counts what a patch introduces whatever its size, as security already did (its tests here guard
that it stays so).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.core import pipeline
from scoring.core.critics.base import Critic
from scoring.core.critics.security import SecurityCritic
from scoring.core.critics.style import StyleCritic, score_style
from scoring.core.intake.diffcheck import parse_diff
from scoring.core.types import CriticResult
from tests.scoring.core.fixtures import gcd_task

#: The honest gcd fix with one undefined name (E0602, an error) in a branch the tests never take.
UNDEFINED_NAME = gcd_task.FIXED.replace("if a and b else 0", "if a and b else ZERO")
#: The honest gcd fix that also unpickles its input: B403 (LOW/HIGH) and B301 (MEDIUM/HIGH), penalty 4.
UNPICKLING = gcd_task.FIXED.replace("import math\n", "import math\nimport pickle\n") + (
    '\n\ndef load(data):\n    """Rebuild a saved pair."""\n    return pickle.loads(data)\n'
)


def constants(count: int) -> str:
    """Module-level padding: `PAD_i = i`, statements pylint has nothing to say about."""
    return "\n\n" + "".join(f"PAD_{i} = {i}\n" for i in range(count))


def helper(count: int) -> str:
    """Padding inside one helper function: a long docstring, then `count` trivial statements."""
    docstring = '    """Padding.\n\n' + "    Nothing to see here.\n" * 20 + '    """\n'
    return "\n\ndef _padding():\n" + docstring + "    total = 0\n" + "    total += 1\n" * count + "    return total\n"


#: Each way to pad: the patch's changes given the module text with the findings in it.
PADDINGS = {
    "module-constants": lambda text: {"gcd/__init__.py": text + constants(300)},
    "helper-in-a-new-file": lambda text: {"gcd/__init__.py": text, "gcd/_padding.py": '"""Padding."""' + helper(300)},
}


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory):
    return gcd_task.task(tmp_path_factory.mktemp("dilution"))


def critic_result(task: gcd_task.Task, critic: Critic, changes: dict[str, str]) -> CriticResult:
    with gcd_task.prepared(task, gcd_task.make_diff(changes)) as ctx:
        return critic.evaluate(ctx)


@pytest.mark.parametrize("padding", PADDINGS.values(), ids=PADDINGS)
def test_padding_a_patch_with_clean_code_does_not_dilute_its_style_messages(task, padding) -> None:
    """Before the fix: 0.08 unpadded, 0.96 with 300 constants, 0.95 with a 300-statement helper."""
    plain = critic_result(task, StyleCritic(), {"gcd/__init__.py": UNDEFINED_NAME})
    padded = critic_result(task, StyleCritic(), padding(UNDEFINED_NAME))
    assert [entry["id"] for entry in plain.evidence["introduced"]] == ["E0602"]
    assert "E0602" in [entry["id"] for entry in padded.evidence["introduced"]]
    assert padded.evidence["statements"] > 50 * plain.evidence["statements"]  # the padding was counted
    assert plain.score is not None and plain.score < 0.5
    assert padded.score is not None and padded.score <= plain.score, padded.rationale


@pytest.mark.parametrize("padding", PADDINGS.values(), ids=PADDINGS)
def test_padding_a_patch_with_clean_code_does_not_dilute_its_security_findings(task, padding) -> None:
    plain = critic_result(task, SecurityCritic(), {"gcd/__init__.py": UNPICKLING})
    padded = critic_result(task, SecurityCritic(), padding(UNPICKLING))
    assert sorted(entry["id"] for entry in plain.evidence["introduced"]) == ["B301", "B403"]
    assert plain.score is not None and plain.score < 0.6
    assert padded.score is not None and padded.score <= plain.score, padded.rationale


def score_end_to_end(task, changes: dict[str, str]) -> dict:
    spec, base_archive, hidden_archive, settings_ = task
    return pipeline.score(
        spec=spec,
        diff=parse_diff(gcd_task.make_diff(changes)),
        base_archive=base_archive,
        hidden_archive=hidden_archive,
        settings=settings_,
    )


@pytest.fixture(scope="module")
def unpadded_result(task) -> dict:
    return score_end_to_end(task, {"gcd/__init__.py": UNDEFINED_NAME})


@pytest.mark.parametrize("padding", PADDINGS.values(), ids=PADDINGS)
def test_padding_does_not_raise_the_reward_end_to_end(task, unpadded_result, padding) -> None:
    """Before the fix: final reward 0.77 unpadded, 0.99 padded (style 0.08 -> 0.96, correctness 1.0 both)."""
    padded = score_end_to_end(task, padding(UNDEFINED_NAME))
    assert unpadded_result["subscores"]["correctness"]["score"] == padded["subscores"]["correctness"]["score"] == 1.0
    assert padded["subscores"]["style"]["score"] <= unpadded_result["subscores"]["style"]["score"]
    assert padded["final_score"] <= unpadded_result["final_score"], (padded["final_score"], padded["subscores"])


def entry(weight: int) -> dict:
    """An introduced, non-fatal message of this weight, as score_style receives it."""
    return {
        "weight": weight,
        "fatal": False,
        "id": "X0000",
        "symbol": "x",
        "severity": "x",
        "file": "f.py",
        "line": 1,
        "message": "m",
        "suppressed": False,
    }


#: Introduced messages of pylint's weights: 1 (warning, refactor, convention) or 5 (error).
ENTRY = st.sampled_from([1, 5]).map(entry)
ANALYSED = SimpleNamespace(failed=[])


@given(st.lists(ENTRY, max_size=30), st.integers(0, 10_000), st.integers(0, 10_000))
def test_the_style_curve_never_rewards_more_statements(introduced, statements, more) -> None:
    fewer, _ = score_style(ANALYSED, introduced, statements, 0)
    padded, _ = score_style(ANALYSED, introduced, statements + more, 0)
    assert padded <= fewer


@given(st.lists(ENTRY, max_size=30), ENTRY, st.integers(0, 10_000))
def test_the_style_curve_never_rewards_a_further_message(introduced, extra, statements) -> None:
    before, _ = score_style(ANALYSED, introduced, statements, 0)
    after, _ = score_style(ANALYSED, [*introduced, extra], statements, 0)
    assert after < before


#: The offending lines a generated patch may carry, each with the messages pylint gives it.
OFFENCES = {
    "undefined name": UNDEFINED_NAME,
    "unused import": gcd_task.FIXED.replace("import math\n", "import math\nimport os\n"),
    "two problems": UNDEFINED_NAME.replace("import math\n", "import math\nimport os\n"),
}


@pytest.fixture(scope="module")
def unpadded_style() -> dict[str, float | None]:
    """The style score of each offence without padding, computed once per offence."""
    return {}


@settings(max_examples=6, deadline=None)
@given(
    offence=st.sampled_from(sorted(OFFENCES)),
    shape=st.sampled_from(["constants", "helper"]),
    count=st.integers(1, 400),
)
def test_appending_clean_statements_to_a_patch_never_raises_its_style(
    task, unpadded_style, offence, shape, count
) -> None:
    """The property the class of attacks breaks, checked through real pylint on generated padding."""
    text = OFFENCES[offence]
    if offence not in unpadded_style:
        unpadded_style[offence] = critic_result(task, StyleCritic(), {"gcd/__init__.py": text}).score
    padding = constants(count) if shape == "constants" else helper(count)
    padded = critic_result(task, StyleCritic(), {"gcd/__init__.py": text + padding})
    assert padded.score is not None and unpadded_style[offence] is not None
    assert padded.score <= unpadded_style[offence], (offence, shape, count, padded.rationale)
