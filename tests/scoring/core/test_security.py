"""The security critic on real bandit: new findings lower the score and are cited by test id, CWE, file and line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scoring.core.analysis.analyser import Analyser
from scoring.core.critics.security import HIGH_SEVERITY_CAP, SecurityCritic
from scoring.core.types import CriticResult
from tests.scoring.core.test_style import context

BASE = '''\
"""Runs things."""


def run(cmd):
    """Run a command."""
    return cmd
'''


@pytest.fixture(scope="module")
def analyser() -> Iterator[Analyser]:
    with Analyser(timeout_s=60) as shared:
        yield shared


def evaluate(tmp_path: Path, base: dict[str, str], patch: dict[str, str], analyser: Analyser) -> CriticResult:
    """Write base and patched trees and score the patch that turns one into the other."""
    return SecurityCritic().evaluate(context(tmp_path, base, patch, analyser))


def introduced_ids(result: CriticResult) -> list[str]:
    return [entry["id"] for entry in result.evidence["introduced"]]


def test_shell_true_is_cited_and_caps_the_score(analyser: Analyser, tmp_path: Path) -> None:
    patched = BASE.replace("    return cmd\n", "    import subprocess\n    return subprocess.call(cmd, shell=True)\n")
    result = evaluate(tmp_path, {"app/run.py": BASE}, {"app/run.py": patched}, analyser)
    assert result.score is not None and result.score <= HIGH_SEVERITY_CAP
    assert (
        "Step: security check. New B602 (CWE-78, subprocess call with shell=True identified, security issue) "
        "at app/run.py:7, severity HIGH, confidence HIGH." in result.rationale
    )
    assert "Step: B602 is HIGH severity. Score capped at 0.2." in result.rationale


def test_yaml_load_lowers_security(analyser: Analyser, tmp_path: Path) -> None:
    patched = "import yaml\n\n\ndef read(text):\n    return yaml.load(text)\n"
    result = evaluate(tmp_path, {"conf.py": BASE}, {"conf.py": patched}, analyser)
    assert "B506" in introduced_ids(result)
    assert result.score is not None and result.score < 0.7
    assert any("B506 (CWE-20," in step and "conf.py:5" in step for step in result.rationale)


def test_pickle_loads_on_input_lowers_security(analyser: Analyser, tmp_path: Path) -> None:
    patched = "import pickle\nimport sys\n\nDATA = pickle.loads(sys.stdin.buffer.read())\n"
    result = evaluate(tmp_path, {}, {"load.py": patched}, analyser)
    assert {"B403", "B301"} <= set(introduced_ids(result))
    assert result.score is not None and result.score < 0.7
    assert any("B301 (CWE-502," in step and "load.py:4" in step for step in result.rationale)


def test_hard_coded_password_lowers_security(analyser: Analyser, tmp_path: Path) -> None:
    patched = BASE + '\n\nPASSWORD = "hunter2"\n'
    result = evaluate(tmp_path, {"app/run.py": BASE}, {"app/run.py": patched}, analyser)
    assert introduced_ids(result) == ["B105"]
    assert result.score is not None and result.score < 1.0
    assert any("B105 (CWE-259," in step and "app/run.py:9" in step for step in result.rationale)


def test_existing_finding_moved_down_is_not_the_patch_s(analyser: Analyser, tmp_path: Path) -> None:
    risky = BASE + '\n\nPASSWORD = "hunter2"\n'
    moved = '"""Runs things."""\n\nTIMEOUT = 3\n\n\n' + risky.removeprefix('"""Runs things."""\n\n\n')
    result = evaluate(tmp_path, {"app/run.py": risky}, {"app/run.py": moved}, analyser)
    assert result.score == 1.0, result.rationale


def test_removing_a_finding_is_never_a_penalty(analyser: Analyser, tmp_path: Path) -> None:
    risky = BASE + '\n\nPASSWORD = "hunter2"\n'
    result = evaluate(tmp_path, {"app/run.py": risky}, {"app/run.py": BASE}, analyser)
    assert result.score == 1.0 and result.evidence["fixed"] == 1


def test_findings_in_unchanged_files_are_ignored(analyser: Analyser, tmp_path: Path) -> None:
    base = {"old.py": 'PASSWORD = "hunter2"\n', "app/run.py": BASE}
    result = evaluate(tmp_path, base, {"app/run.py": BASE + "\nX = 1\n"}, analyser)
    assert result.score == 1.0


def test_patch_without_python_files_has_nothing_to_judge(analyser: Analyser, tmp_path: Path) -> None:
    result = evaluate(tmp_path, {"notes.txt": "a\n"}, {"notes.txt": "b\n"}, analyser)
    assert result.score == 1.0 and "nothing to judge" in result.rationale[0]
