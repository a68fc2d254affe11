"""Exports that know their audience: `raw` is for admins and says so; every trainer-facing file (sft, pairwise,
raw-safe) is scanned for the hidden tests' names, source, output and values, and for other clients' data.

The patches are scored by the real pipeline on the `tiny` task, whose hidden test `test_add_negative` an
overfitting patch fails, so the stored evidence holds real hidden names and pytest output; a reviewer then quotes
the hidden test in a comment and a note, as reviewers (who see hidden tests) do.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from exports.services import AUDIENCE, FORMATS, export_labels, manifest_path
from scoring.models import Patch
from scoring.services import patch_score_inline
from tests.exports.factories import make_label
from tests.helpers import TINY

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

#: Passes the visible test (positive numbers), fails the hidden one (negative numbers).
OVERFIT = (TINY / "fix.diff").read_text().replace("+    return a + b\n", "+    return a + b if a >= 0 else a - b\n")
HIDDEN_SOURCE = (TINY / "hidden" / "test_hidden_calc.py").read_text()
#: What a trainer must never read: the hidden test's name, its file, a line of its source.
HIDDEN_NEEDLES = ("test_add_negative", "test_hidden_calc", "assert add(-2, -3) == -5")
QUOTE = "Fails the hidden test_hidden_calc.py::test_add_negative, which checks `assert add(-2, -3) == -5`."


def _scored(task, client, diff: str, external_id: str) -> Patch:
    patch = Patch.objects.create(
        task=task,
        client=client,
        diff=diff,
        diff_sha256=hashlib.sha256(diff.encode()).hexdigest(),
        external_id=external_id,
        metadata={"run": f"{external_id}-metadata"},
    )
    assert patch_score_inline(patch=patch)
    patch.refresh_from_db()
    return patch


@pytest.fixture
def labelled(tiny_task, make_user, fix_diff):
    """Alice's overfitting and correct patches, Bob's correct one, all scored for real and labelled."""
    alice, _ = make_user("alice", "client")
    bob, _ = make_user("bob", "client")
    rita, _ = make_user("rita", "reviewer")
    overfit = _scored(tiny_task, alice, OVERFIT, "alice-secret-key-1")
    good = _scored(tiny_task, alice, fix_diff, "alice-secret-key-2")
    theirs = _scored(tiny_task, bob, fix_diff.replace("return a + b", "return b + a"), "bob-private-key")
    hidden = overfit.evaluations.get().subscores["correctness"]["evidence"]["hidden"]
    assert hidden["failed"] >= 1, hidden  # the overfit really failed a hidden test: the evidence names it
    make_label(overfit, rita, {"correctness": 0.1}, comment=QUOTE, final=0.1)
    event = overfit.label_events.get()
    event.subscores["correctness"]["note"] = f"see {HIDDEN_SOURCE.splitlines()[-1].strip()}"
    event.save(update_fields=["subscores"])
    make_label(good, rita, {"correctness": 1.0}, comment="Correct, and simple.", final=0.95)
    make_label(theirs, rita, {"correctness": 1.0}, comment="Bob's patch is right too.", final=0.9)
    return {"alice": alice, "bob": bob, "overfit": overfit, "good": good, "theirs": theirs, "hidden": hidden}


def _outputs(hidden: dict) -> list[str]:
    """The meaningful lines of the hidden tests' output stored in the evidence."""
    lines = [line.strip() for test in hidden.get("tests", []) for line in (test.get("output") or "").splitlines()]
    return [line for line in lines if len(line) >= 16 and any(c.isalnum() for c in line)]


def _export_all(tmp_path, **options) -> dict[str, tuple[str, dict]]:
    """Every format: name -> (file text, manifest)."""
    out = {}
    for fmt in FORMATS:
        path = tmp_path / f"{fmt}-{options.get('client') and options['client'].username}.jsonl"
        export_labels(fmt=fmt, out=path, with_execution=True, min_margin=0.2, **options)
        out[fmt] = (path.read_text(), json.loads(manifest_path(path).read_text()))
    return out


def test_trainer_facing_files_hold_nothing_of_the_hidden_tests(labelled, tmp_path):
    files = _export_all(tmp_path)
    raw, raw_manifest = files["raw"]
    # The admin's file keeps everything, so the needles are really there to find, and it says who it is for.
    assert raw_manifest["audience"] == "admin" and "admins only" in raw_manifest["audience_note"]
    assert all(needle in raw for needle in HIDDEN_NEEDLES[:2]) and "alice-secret-key-1" in raw
    outputs = _outputs(labelled["hidden"])
    assert outputs, "the hidden test's failure output is in the evidence"
    trainer = [fmt for fmt in FORMATS if AUDIENCE[fmt] == "trainer"]
    assert set(trainer) >= {"sft", "pairwise", "raw-safe"}
    for fmt in trainer:
        text, manifest = files[fmt]
        assert manifest["audience"] == "trainer" and manifest["rows"] > 0, fmt
        found = [needle for needle in (*HIDDEN_NEEDLES, *outputs) if needle in text]
        assert found == [], f"{fmt} leaks hidden-test content: {found}"
        assert "alice-secret-key" not in text and "bob-private-key" not in text, f"{fmt} carries external ids"
        assert "-metadata" not in text, f"{fmt} carries client metadata"
    sft_rows = [json.loads(line) for line in files["sft"][0].splitlines()]
    overfit_target = next(
        r["messages"][-1]["content"]
        for r in sft_rows
        if r["patch"] == labelled["overfit"].pk and r["source"] == "human"
    )
    assert "[withheld]" in overfit_target  # the reviewer's quote is kept, less what it quoted


def test_an_export_for_one_client_holds_none_of_another_clients_patches(labelled, tmp_path):
    files = _export_all(tmp_path, client=labelled["alice"])
    theirs = labelled["theirs"]
    for fmt, (text, manifest) in files.items():
        rows = [json.loads(line) for line in text.splitlines()]
        assert manifest["filters"]["client"] == "alice"
        ids = (
            {r.get("patch") for r in rows}
            | {r.get("chosen_patch") for r in rows}
            | {r.get("rejected_patch") for r in rows}
        )
        assert theirs.pk not in ids, fmt
        assert "return b + a" not in text and "bob-private-key" not in text and "Bob's patch" not in text, fmt
    pairwise_rows = [json.loads(line) for line in files["pairwise"][0].splitlines()]
    assert {(r["chosen_patch"], r["rejected_patch"]) for r in pairwise_rows} == {
        (labelled["good"].pk, labelled["overfit"].pk)
    }
