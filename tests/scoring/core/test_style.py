"""The style critic on real pylint: only the messages a patch introduces lower the score."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from scoring.core.analysis.analyser import Analyser
from scoring.core.critics.security import SecurityCritic
from scoring.core.critics.style import StyleCritic
from scoring.core.types import PipelineSettings, ScoringContext

CLEAN = '''\
"""Helpers."""


def total(values):
    """Sum the values."""
    result = 0
    for value in values:
        result += value
    return result
'''

WARNED = '''\
def legacy(values):
    """Old code with an unused variable."""
    leftover = len(values)
    return values
'''


@pytest.fixture(scope="module")
def analyser() -> Iterator[Analyser]:
    with Analyser(timeout_s=60) as shared:
        yield shared


def added_lines(before: str, after: str) -> frozenset[int]:
    """1-based lines of `after` that a diff from `before` adds or changes."""
    matcher = difflib.SequenceMatcher(None, before.splitlines(), after.splitlines(), autojunk=False)
    return frozenset(
        line + 1
        for tag, _, _, start, end in matcher.get_opcodes()
        if tag in ("replace", "insert")
        for line in range(start, end)
    )


def context(
    tmp_path: Path, base: dict[str, str], patch: dict[str, str], analyser: Analyser | None, lint_config: str = ""
) -> ScoringContext:
    """Base and patched trees on disk, and the context a critic sees for the patch that turns one into the other."""
    for root, files in (("base", base), ("patched", {**base, **patch})):
        for name, text in files.items():
            (tmp_path / root / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / root / name).write_text(text)
    changed = tuple(name for name, text in patch.items() if base.get(name) != text)
    return ScoringContext(
        spec=SimpleNamespace(lint_config=lint_config or None),
        diff=None,
        base_dir=tmp_path / "base",
        patched_dir=tmp_path / "patched",
        hidden_dir=None,
        env_dir=None,
        task_cache_dir=tmp_path / "cache",
        settings=PipelineSettings(cache_root=tmp_path / "cache-root", work_root=tmp_path / "work"),
        run=None,  # type: ignore[arg-type]  # static analysis runs nothing in the sandbox
        changed_files=changed,
        added_lines={name: added_lines(base.get(name, ""), patch[name]) for name in changed},
        analyser=analyser,
    )


def evaluate(tmp_path: Path, base: dict[str, str], patch: dict[str, str], analyser: Analyser | None, **kw: str):
    return StyleCritic().evaluate(context(tmp_path, base, patch, analyser, **kw))


def test_patch_adding_an_unused_variable_loses_style(analyser: Analyser, tmp_path: Path) -> None:
    patched = CLEAN.replace("    result = 0\n", "    result = 0\n    spare = 3\n")
    result = evaluate(tmp_path, {"lib.py": CLEAN}, {"lib.py": patched}, analyser)
    assert result.score is not None and result.score < 0.9
    assert any("W0612 unused-variable at lib.py:7" in step for step in result.rationale)
    assert result.evidence["introduced"][0] | {"message": ""} == {
        "file": "lib.py",
        "line": 7,
        "id": "W0612",
        "symbol": "unused-variable",
        "message": "",
        "severity": "warning",
        "weight": 1,
        "fatal": False,
        "suppressed": False,
    }


def test_patch_shadowing_a_builtin_loses_style(analyser: Analyser, tmp_path: Path) -> None:
    patched = CLEAN.replace("    return result\n", "    list = [result]\n    return list\n")
    result = evaluate(tmp_path, {"lib.py": CLEAN}, {"lib.py": patched}, analyser)
    assert result.score is not None and result.score < 0.9
    assert [entry["id"] for entry in result.evidence["introduced"]] == ["W0622"]


def test_moving_a_function_unchanged_keeps_full_style(analyser: Analyser, tmp_path: Path) -> None:
    base = CLEAN + "\n\n" + WARNED
    moved = '"""Helpers."""\n\n\n' + WARNED + "\n\n" + CLEAN.removeprefix('"""Helpers."""\n\n\n')
    result = evaluate(tmp_path, {"lib.py": base}, {"lib.py": moved}, analyser)
    assert result.score == 1.0, result.rationale


def test_deleting_code_that_had_warnings_keeps_full_style(analyser: Analyser, tmp_path: Path) -> None:
    result = evaluate(tmp_path, {"lib.py": CLEAN + "\n\n" + WARNED}, {"lib.py": CLEAN}, analyser)
    assert result.score == 1.0
    assert result.evidence["fixed"] >= 1


def test_old_warnings_pushed_down_by_an_insertion_are_not_the_patch_s(analyser: Analyser, tmp_path: Path) -> None:
    base = '"""Helpers."""\n\n\n' + WARNED
    patched = '"""Helpers."""\nimport os\n\nHOME = os.sep\n\n\n' + WARNED
    result = evaluate(tmp_path, {"lib.py": base}, {"lib.py": patched}, analyser)
    assert result.score == 1.0, result.rationale


def test_patch_that_breaks_parsing_gets_zero_with_the_fatal_message_cited(analyser: Analyser, tmp_path: Path) -> None:
    result = evaluate(tmp_path, {"lib.py": CLEAN}, {"lib.py": CLEAN + "\ndef broken(:\n    pass\n"}, analyser)
    assert result.score == 0.0
    assert any("E0001 syntax-error at lib.py:" in step and "Score 0" in step for step in result.rationale)


def test_patch_that_tells_pylint_to_skip_the_file_gets_zero(analyser: Analyser, tmp_path: Path) -> None:
    result = evaluate(tmp_path, {"lib.py": CLEAN}, {"lib.py": "# pylint: skip-file\n" + CLEAN}, analyser)
    assert result.score == 0.0
    assert any("file-ignored" in step for step in result.rationale)


def test_patch_without_python_files_has_nothing_to_judge(analyser: Analyser, tmp_path: Path) -> None:
    result = evaluate(tmp_path, {"lib.py": CLEAN, "README.md": "a\n"}, {"README.md": "b\n"}, analyser)
    assert (result.score, result.confidence) == (1.0, 1.0)
    assert "nothing to judge" in result.rationale[0]


def test_generated_file_lowers_confidence_and_says_why(analyser: Analyser, tmp_path: Path) -> None:
    header = "# Code generated by protoc. DO NOT EDIT.\n"
    plain = evaluate(tmp_path / "plain", {"lib.py": CLEAN}, {"lib.py": CLEAN + "\nX = 1\n"}, analyser)
    generated = evaluate(
        tmp_path / "gen", {"lib.py": header + CLEAN}, {"lib.py": header + CLEAN + "\nX = 1\n"}, analyser
    )
    assert generated.confidence < plain.confidence
    assert any("generated" in step for step in generated.rationale if step.startswith("Step: confidence"))


def test_task_lint_config_is_read_from_the_base_tree_and_editing_it_is_tamper(
    analyser: Analyser, tmp_path: Path
) -> None:
    rc = "[MESSAGES CONTROL]\ndisable=unused-variable\n"
    patched = CLEAN.replace("    result = 0\n", "    result = 0\n    spare = 3\n    list = [spare]\n")
    result = evaluate(
        tmp_path,
        {"lib.py": CLEAN, "pylintrc": rc},
        {"lib.py": patched, "pylintrc": rc.replace("unused-variable", "unused-variable,redefined-builtin")},
        analyser,
        lint_config="pylintrc",
    )
    # The base config silences unused-variable; the patched config's extra silence is ignored.
    assert [entry["id"] for entry in result.evidence["introduced"]] == ["W0622"]
    assert result.flags == {"tamper"}
    assert "task's lint configuration" in result.rationale[0]


def test_base_findings_come_from_the_task_cache(analyser: Analyser, tmp_path: Path) -> None:
    base = {"lib.py": CLEAN}
    patch = {"lib.py": CLEAN.replace("    result = 0\n", "    result = 0\n    spare = 3\n")}
    first = context(tmp_path / "first", base, patch, analyser)
    assert StyleCritic().evaluate(first).score < 1.0
    (entry,) = (first.task_cache_dir / "analysis").glob("*.json")
    cached = json.loads(entry.read_text())
    # Plant the new message in the cached base results: if the cache is read, the message is no longer new.
    planted = dict(tool="pylint", id="W0612", name="unused-variable", severity="warning", line=7, column=4)
    planted |= dict(message="planted", scope="total", context="spare = 3", confidence="", cwe=None, suppressed=False)
    cached["pylint"].append(planted)
    entry.write_text(json.dumps(cached))
    second = context(tmp_path / "second", base, patch, analyser)  # another patch of the same task
    second.task_cache_dir = first.task_cache_dir
    assert StyleCritic().evaluate(second).score == 1.0


def test_file_that_hangs_the_analyser_scores_zero_and_the_critic_returns(tmp_path: Path) -> None:
    slow = "\n".join(f"v{i} = {i}" for i in range(60000)) + "\n"
    with Analyser(timeout_s=2) as short:
        result = evaluate(tmp_path, {"lib.py": CLEAN}, {"lib.py": CLEAN, "slow.py": slow}, short)
        assert result.score == 0.0 and result.confidence <= 0.3
        assert any("timed out" in step for step in result.rationale)
        again = evaluate(tmp_path / "again", {"lib.py": CLEAN}, {"lib.py": CLEAN + "\nX = 1\n"}, short)
        assert again.score == 1.0


def test_without_a_shared_analyser_a_short_lived_one_is_used(tmp_path: Path) -> None:
    patched = CLEAN.replace("    result = 0\n", "    result = 0\n    spare = 3\n")
    result = evaluate(tmp_path, {"lib.py": CLEAN}, {"lib.py": patched}, None)
    assert [entry["id"] for entry in result.evidence["introduced"]] == ["W0612"]


def test_security_critic_reuses_the_analysis_the_style_critic_just_made(tmp_path: Path) -> None:
    patched = CLEAN.replace("    result = 0\n", "    result = 0\n    spare = 3\n")
    ctx = context(tmp_path, {"lib.py": CLEAN}, {"lib.py": patched}, None)
    with Analyser(recycle_after=1) as counting:  # every request ends its child: children_started counts requests
        ctx.analyser = counting
        StyleCritic().evaluate(ctx)
        requests = counting.children_started
        SecurityCritic().evaluate(ctx)
        assert counting.children_started == requests == 2  # the patched tree, then the base tree; nothing more


def test_patch_that_only_edits_the_pylintrc_is_flagged_tamper(analyser: Analyser, tmp_path: Path) -> None:
    base = {"lib.py": CLEAN, ".pylintrc": "[MAIN]\n"}
    result = evaluate(tmp_path, base, {".pylintrc": "[MESSAGES CONTROL]\ndisable=all\n"}, analyser)
    assert result.score == 1.0 and result.flags == {"tamper"}
    assert any(".pylintrc" in step and "tamper" in step for step in result.rationale)


def test_task_lint_config_cannot_run_code_in_the_analyser(analyser: Analyser, tmp_path: Path) -> None:
    marker = tmp_path / "init-hook-ran"
    rc = f"[MAIN]\ninit-hook=open({str(marker)!r}, 'w').close()\nload-plugins=pylint.extensions.mccabe\n"
    result = evaluate(
        tmp_path, {"lib.py": CLEAN, "pylintrc": rc}, {"lib.py": CLEAN + "\nX = 1\n"}, analyser, lint_config="pylintrc"
    )
    assert not marker.exists()
    assert result.score == 1.0
    assert any("ignored for safety: init-hook, load-plugins" in step for step in result.rationale)


HOSTILE_LINT_CONFIG = {
    "[tool] pylint = 5": ("pyproject.toml", "[tool]\npylint = 5\n"),
    "tool = 5": ("pyproject.toml", "tool = 5\n"),
    "nested past the recursion limit": ("pyproject.toml", "x = " + "[" * 1000 + "]" * 1000 + "\n"),
    "invalid TOML": ("pyproject.toml", "[tool.pylint\n"),
    "setup.cfg duplicate sections": ("setup.cfg", "[pylint]\ndisable = all\n[pylint]\ndisable = none\n"),
    "setup.cfg NUL bytes": ("setup.cfg", "[pylint]\ndisable = \x00all\n[pylint\x00]\n"),
    "tox.ini without a header": ("tox.ini", "disable = all\n"),
}


@pytest.mark.parametrize(("name", "text"), HOSTILE_LINT_CONFIG.values(), ids=HOSTILE_LINT_CONFIG)
def test_lint_configuration_a_patch_makes_unreadable_is_tamper_not_a_crash(
    analyser: Analyser, tmp_path: Path, name: str, text: str
) -> None:
    # The workspace reverts such files first; the critic must still stand on its own if one reaches it.
    result = evaluate(tmp_path, {"lib.py": CLEAN}, {"lib.py": CLEAN, name: text}, analyser)
    assert result.score == 1.0
    assert result.flags == {"tamper"}
    assert any(f"lint configuration ({name})" in step for step in result.rationale), result.rationale


@pytest.mark.parametrize(("name", "text"), HOSTILE_LINT_CONFIG.values(), ids=HOSTILE_LINT_CONFIG)
def test_a_task_lint_config_that_cannot_be_read_falls_back_to_the_review_configuration(
    analyser: Analyser, tmp_path: Path, name: str, text: str
) -> None:
    result = evaluate(
        tmp_path, {"lib.py": CLEAN, name: text}, {"lib.py": CLEAN + "\nX = 1\n"}, analyser, lint_config=name
    )
    assert result.score == 1.0
    assert any(f"lint_config {name} could not be read (it " in step for step in result.rationale), result.rationale
