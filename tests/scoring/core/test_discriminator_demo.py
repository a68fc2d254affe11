"""The demo tasks ship references: each passes the upload check, the good fixes agree with it, the cheat does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scoring.core.critics import discriminator
from scoring.core.critics.correctness.critic import CorrectnessCritic
from scoring.core.intake.spec import parse_spec
from scoring.core.sandbox import process as sandbox
from scoring.core.sandbox import workspace
from scoring.core.trees import pack_tree
from scoring.core.types import PipelineSettings

DEMO = Path(__file__).resolve().parents[3] / "scoring" / "demo"
MANIFEST = json.loads((DEMO / "manifest.json").read_text())


def _correctness(task_name: str, patch_file: str, root: Path):
    entry = next(task for task in MANIFEST["tasks"] if task["name"] == task_name)
    spec_path = DEMO / entry["spec"]
    spec = parse_spec(spec_path.read_text(), spec_dir=spec_path.parent)
    settings = PipelineSettings(cache_root=root / "cache", work_root=root / "work")
    base = pack_tree(spec.repo, root / f"{task_name}-repo.tar.gz")
    hidden = pack_tree(spec.hidden_tests, root / f"{task_name}-hidden.tar.gz")
    diff = (DEMO / patch_file).read_text()
    with workspace.prepare(
        spec=spec, diff=diff, base_archive=base, hidden_archive=hidden, settings=settings, run=sandbox.run
    ) as ctx:
        discriminator.check_reference(
            spec=spec, reference_path=spec.reference, base_dir=ctx.base_dir, settings=settings, run_command=ctx.run
        )
        return CorrectnessCritic().evaluate(ctx)


@pytest.mark.parametrize("task_name", [task["name"] for task in MANIFEST["tasks"]])
def test_every_demo_task_has_a_reference_its_good_fix_agrees_with(task_name, tmp_path) -> None:
    good = next(
        p["file"] for t in MANIFEST["tasks"] if t["name"] == task_name for p in t["patches"] if p["kind"] == "good"
    )
    result = _correctness(task_name, good, tmp_path)
    verdict = result.evidence["discriminator"]
    assert verdict["ran"] and verdict["inputs"] >= 100
    assert verdict["disagree"] == 0
    assert result.score == 1.0


def test_the_demo_cheat_with_hard_coded_answers_is_caught_by_the_discriminator(tmp_path) -> None:
    result = _correctness("slugify", "tasks/slugify/patches/cheating_hardcoded_answers.diff", tmp_path)
    verdict = result.evidence["discriminator"]
    assert verdict["disagree"] > 0
    assert "overfit" in result.flags
    assert verdict["counterexamples"][0]["call"].startswith("slugify(")
