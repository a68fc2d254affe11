"""The discriminator's verdicts as training rows: one row per judged input, labelled with what execution found.

Patches of the `tiny` task, registered with a reference and its hidden tests, are scored by the real pipeline
(the probe runs in the sandbox, the harness compares); the export then turns each patch's kept input verdicts
into rows. The audience rules are checked on the files as written: no row of any format other than `raw` holds
the reference's source or the hidden tests, and the per-input verdicts reach neither API clients, nor
trainer-facing files, nor the critic's prompt.
"""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from django.core.management import call_command

from exports.services import AUDIENCE, FORMATS, export_labels, manifest_path
from scoring.core.critics import discriminator
from scoring.core.intake.spec import parse_spec
from scoring.core.learned.prompt import DISCRIMINATOR_SYSTEM
from scoring.models import Patch
from scoring.selectors import patch_result
from scoring.services import patch_score_inline, task_create_from_dirs
from tests.exports.factories import make_label
from tests.helpers import TINY

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

FIX = (TINY / "fix.diff").read_text()
#: The reference: right, and written in a way no patch below is, so a leak of its source can be seen.
REFERENCE_LINE = "total = a + b  # summed by the reference solution"
REFERENCE = FIX.replace("+    return a + b\n", f"+    {REFERENCE_LINE}\n+    return total\n").replace(
    "@@ -3,7 +3,7 @@", "@@ -3,7 +3,8 @@"
)
#: Passes the visible test by hard-coding its answer; wrong on almost every other input.
HARD_CODED = FIX.replace("+    return a + b", "+    return 5 if (a, b) == (2, 3) else a - b")
HIDDEN_NEEDLES = ("test_add_negative", "test_hidden_calc")


@pytest.fixture
def scored(tmp_path, make_user):
    """The tiny task with a reference and hidden tests; an honest and a hard-coding patch scored for real."""
    (tmp_path / "reference.diff").write_text(REFERENCE)
    spec = json.loads((TINY / "spec.json").read_text())
    spec.update(
        name="tiny-ref",
        repo=str(TINY / "repo"),
        hidden_tests=str(TINY / "hidden"),
        reference=str(tmp_path / "reference.diff"),
    )
    task = task_create_from_dirs(spec=parse_spec(spec, spec_dir=TINY), shared=True)
    client, _ = make_user("alice", "client")
    patches = {}
    for name, diff in (("honest", FIX), ("hard", HARD_CODED)):
        patch = Patch.objects.create(
            task=task, client=client, diff=diff, diff_sha256=hashlib.sha256(diff.encode()).hexdigest()
        )
        assert patch_score_inline(patch=patch)
        patch.refresh_from_db()
        patches[name] = patch
    return patches


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_judged_input_becomes_a_row_labelled_with_what_execution_found(scored, tmp_path):
    out = tmp_path / "discriminator.jsonl"
    manifest = export_labels(fmt="discriminator", out=out)
    rows = _rows(out)
    by_patch = {name: [r for r in rows if r["patch"] == patch.pk] for name, patch in scored.items()}
    # The honest patch agrees everywhere; the hard-coding one disagrees on most inputs, and its rows say so.
    assert by_patch["honest"] and all(r["agrees"] for r in by_patch["honest"])
    hard = by_patch["hard"]
    assert len([r for r in hard if not r["agrees"]]) == discriminator.VERDICTS_DISAGREE
    assert any(r["agrees"] for r in hard)  # the visible case it hard-coded, at least
    row = next(r for r in hard if not r["agrees"])
    assert row["source"] == "discriminator" and row["entry_point"].endswith(":" + row["call"].split("(")[0])
    system, user, answer = row["messages"]
    assert system["content"] == DISCRIMINATOR_SYSTEM
    assert f"Call: {row['call']}" in user["content"] and "return 5 if (a, b) == (2, 3)" in user["content"]
    assert json.loads(answer["content"]) == {"agrees": False}
    # The prompt is the task, the diff and the call: no Result, whose rationale would give the answer away.
    assert "disagree" not in user["content"] and "Step:" not in user["content"]
    assert manifest["audience"] == "critic" and "never for a client" in manifest["audience_note"]
    assert manifest["rows"] == len(rows) and manifest["parquet"]["rows"] == len(rows)


def test_a_patch_a_reviewer_marked_task_broken_or_without_a_discriminator_verdict_gives_no_rows(
    scored, tmp_path, make_user, tiny_task, fix_diff
):
    reviewer, _ = make_user("rita", "reviewer")
    make_label(scored["hard"], reviewer, {"correctness": 0.0}, final=0.0, task_broken=True)
    plain = Patch.objects.create(
        task=tiny_task, client=scored["honest"].client, diff=fix_diff, diff_sha256=hashlib.sha256(b"x").hexdigest()
    )
    assert patch_score_inline(patch=plain)
    out = tmp_path / "d.jsonl"
    manifest = export_labels(fmt="discriminator", out=out)
    assert {r["patch"] for r in _rows(out)} == {scored["honest"].pk}
    assert manifest["skipped"] == {"task_broken": 1, "no_discriminator": 1}


def test_no_file_but_the_admins_holds_the_reference_source_or_the_hidden_tests(scored, tmp_path, make_user):
    reviewer, _ = make_user("rita", "reviewer")
    for patch in scored.values():  # labels, so sft and pairwise have rows too
        good = patch is scored["honest"]
        make_label(patch, reviewer, {"correctness": 1.0 if good else 0.1}, final=0.9 if good else 0.1)
    texts = {}
    for fmt in FORMATS:
        path = tmp_path / f"{fmt}.jsonl"
        export_labels(fmt=fmt, out=path, with_execution=True)
        texts[fmt] = path.read_text()
        assert json.loads(manifest_path(path).read_text())["rows"] > 0, fmt
    for fmt, text in texts.items():
        assert REFERENCE_LINE not in text, f"{fmt} holds the reference's source"
        if AUDIENCE[fmt] != "admin":
            assert not [needle for needle in HIDDEN_NEEDLES if needle in text], f"{fmt} names a hidden test"
        if AUDIENCE[fmt] == "trainer":
            # The per-input verdicts would give the reference's answers on the task's fixed inputs.
            assert discriminator.INPUT_VERDICTS not in text, fmt
    assert discriminator.INPUT_VERDICTS in texts["raw"]  # the admin's file keeps them: they were there to leak


def test_api_clients_and_the_critics_prompt_never_see_the_per_input_verdicts(scored):
    from scoring.core.learned.prompt import build_messages
    from scoring.selectors import critic_input

    hard = scored["hard"]
    stored = hard.evaluations.get().subscores["correctness"]["evidence"]["discriminator"]
    assert len(stored[discriminator.INPUT_VERDICTS]) > discriminator.VERDICTS_DISAGREE
    shown = patch_result(hard, reveal_hidden=False)["subscores"]["correctness"]["evidence"]["discriminator"]
    assert discriminator.INPUT_VERDICTS not in shown and shown["counterexamples"] == stored["counterexamples"]
    task, diff, result = critic_input(hard)
    prompt = json.dumps(build_messages(task=task, diff=diff, result=result))
    assert "input_verdicts" not in prompt and "discriminator.counterexamples" in prompt


def test_export_command_warns_that_the_file_is_not_for_clients(scored, tmp_path):
    err = io.StringIO()
    out = str(tmp_path / "d.jsonl")
    call_command(
        "export_labels", "--format", "discriminator", "--out", out, "--no-progress", stderr=err, stdout=io.StringIO()
    )
    assert "never for a client" in err.getvalue()
