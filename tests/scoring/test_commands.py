"""score_patch and load_demo, run the way a user runs them."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from scoring.models import Evaluation, Patch, Task
from tests.helpers import TINY


def test_score_patch_prints_the_result_of_a_fix_without_a_database(capsys):
    call_command("score_patch", "--task", str(TINY / "spec.json"), "--patch", str(TINY / "fix.diff"), "--json")
    result = json.loads(capsys.readouterr().out)
    assert "id" not in result
    assert result["task"] == "tiny" and result["external_id"] is None
    assert result["status"] in ("scored", "needs_review")
    assert result["subscores"]["correctness"]["score"] == 1.0
    assert result["meta"]["sandbox"] == "bwrap"
    assert set(result["meta"]["tools"]) >= {"pylint", "bandit", "pytest"}


def test_score_patch_summary_reads_like_a_report(capsys):
    call_command("score_patch", "--task", str(TINY / "spec.json"), "--patch", str(TINY / "fix.diff"))
    out = capsys.readouterr().out
    assert out.startswith("Task tiny: reward")
    assert "correctness: 1.00" in out


@pytest.mark.parametrize(
    "spec, patch, message",
    [
        ("missing.json", "fix.diff", "cannot read the task spec"),
        ("spec.json", "missing.diff", "cannot read the patch"),
        ("spec.json", "spec.json", "diff"),
    ],
)
def test_score_patch_exits_2_with_a_message_on_bad_input(spec, patch, message):
    with pytest.raises(CommandError) as excinfo:
        call_command("score_patch", "--task", str(TINY / spec), "--patch", str(TINY / patch))
    assert excinfo.value.returncode == 2
    assert message in str(excinfo.value).lower()


def test_score_patch_refuses_a_diff_that_does_not_apply(tmp_path):
    bad = tmp_path / "bad.diff"
    bad.write_text((TINY / "fix.diff").read_text().replace("-    return a - b", "-    return a * b"))
    with pytest.raises(CommandError) as excinfo:
        call_command("score_patch", "--task", str(TINY / "spec.json"), "--patch", str(bad))
    assert excinfo.value.returncode == 2


@pytest.fixture
def tiny_demo(tmp_path, monkeypatch):
    """A demo folder with the tiny task and two patches, in the manifest format of scoring/demo."""
    from labeling.management.commands import load_demo

    root = tmp_path / "demo"
    task_dir = root / "tasks" / "tiny"
    shutil.copytree(TINY, task_dir)
    (task_dir / "patches").mkdir()
    shutil.copy(TINY / "fix.diff", task_dir / "patches" / "good.diff")
    (task_dir / "patches" / "bad.diff").write_text(
        "diff --git a/calc/__init__.py b/calc/__init__.py\n"
        "--- a/calc/__init__.py\n"
        "+++ b/calc/__init__.py\n"
        "@@ -3,7 +3,7 @@\n"
        " \n"
        " def add(a, b):\n"
        '-    """Return the sum of a and b."""\n'
        '+    """Return a plus b."""\n'
        "     return a - b\n"
        " \n"
        " \n"
        " def double(x):\n"
    )
    manifest = {
        "tasks": [
            {
                "name": "tiny",
                "spec": "tasks/tiny/spec.json",
                "patches": [
                    {"file": "tasks/tiny/patches/good.diff", "kind": "good", "description": "the fix"},
                    {"file": "tasks/tiny/patches/bad.diff", "kind": "bad", "description": "a docstring only"},
                ],
            }
        ]
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(load_demo, "demo_root", lambda: root)
    return root


@pytest.mark.django_db
@pytest.mark.slow
def test_load_demo_scores_labels_prints_accounts_and_is_idempotent(tiny_demo, capsys):
    from labeling.models import LabelEvent

    call_command("load_demo")
    out = capsys.readouterr().out
    assert "reviewer  login: reviewer / " in out and "admin     login: admin / " in out
    assert Task.objects.get(name="tiny").is_demo
    assert Patch.objects.filter(is_demo=True).count() == 2
    assert Evaluation.objects.count() == 2
    labels = LabelEvent.objects.filter(is_demo=True)
    assert labels.count() == 2
    bad = labels.get(patch__external_id="demo:tasks/tiny/patches/bad.diff")
    assert bad.subscores["correctness"]["human"] == 0.0

    call_command("load_demo")
    assert Patch.objects.count() == 2 and Evaluation.objects.count() == 2 and labels.count() == 2
    from django.test import Client

    reviewer = Client()
    assert reviewer.login(username="reviewer", password=out.split("login: reviewer / ")[1].split()[0])


@pytest.mark.django_db
def test_old_evidence_is_pruned_and_scores_stay(tiny_task, fix_diff, make_user, settings):
    from scoring import selectors, services

    user, _ = make_user("pruner", "client")
    patch = services.patch_submit(client=user, task=tiny_task, diff=fix_diff, enqueue=False).patch
    profile, _ = selectors.active_weights()
    evaluation = Evaluation.objects.create(
        patch=patch,
        pipeline_version="test",
        subscores={"correctness": {"score": 1.0, "confidence": 0.9, "rationale": ["Step: x."], "evidence": {"a": 1}}},
        final_score=1.0,
        weight_profile=profile,
        route="auto",
    )
    Evaluation.objects.filter(pk=evaluation.pk).update(created_at=timezone.now() - timedelta(days=400))
    assert services.prune_evidence() == 1
    evaluation.refresh_from_db()
    assert evaluation.subscores["correctness"]["evidence"] == {"pruned": True}
    assert evaluation.subscores["correctness"]["rationale"] == ["Step: x."]
    assert evaluation.final_score == 1.0
    assert services.prune_evidence() == 0
