"""Label exports from real LabelEvent rows: what a trainer gets in each format, the split, the manifest, the
cut-off, demo data, pseudonyms, loading with `datasets`, and memory that does not grow with the export."""

from __future__ import annotations

import gc
import hashlib
import json
import tracemalloc
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from exports.services import VAL_SHARE, _bucket, export_labels, manifest_path, reviewer_pseudonym, task_split
from scoring.core.learned.prompt import build_messages
from scoring.selectors import critic_input
from tests.exports.factories import bulk_labelled, diff_for, make_label, make_patch, make_task, two_sided_tasks

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewers(make_user):
    return make_user("rita", "reviewer")[0], make_user("rolf", "reviewer")[0]


def rows_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def labelled(reviewers):
    """Two tasks (one per split), three labelled patches each, a label of each reviewer on the first patch."""
    rita, rolf = reviewers
    patches = []
    for t, name in enumerate(two_sided_tasks()):
        task = make_task(name)
        for i, final in enumerate((0.9, 0.5, 0.1)):
            patch = make_patch(task, 10 * t + i)
            make_label(patch, rita, {"correctness": final}, final=final, comment=f"checked patch {patch.pk}")
            patches.append(patch)
    make_label(patches[0], rolf, {"correctness": 0.7, "style": 0.4}, final=0.7)
    return patches


def test_manifest_counts_and_hash_describe_the_file(labelled, tmp_path):
    out = tmp_path / "sft.jsonl"
    manifest = export_labels(fmt="sft", out=out, with_execution=True)
    rows = rows_of(out)
    assert json.loads(manifest_path(out).read_text()) == manifest
    assert manifest["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert manifest["bytes"] == out.stat().st_size
    assert manifest["rows"] == len(rows) == 12  # 6 patches, a human and an execution row each
    assert manifest["counts"] == {
        "train": sum(r["split"] == "train" for r in rows),
        "val": sum(r["split"] == "val" for r in rows),
    }
    assert manifest["counts"] == {"train": 6, "val": 6}
    assert manifest["counts_by_source"] == {"execution": {"train": 3, "val": 3}, "human": {"train": 3, "val": 3}}
    assert manifest["filters"] == {"include_demo": False, "client": None, "with_execution": True}
    assert manifest["pipeline_versions"] and manifest["weight_profiles"]
    assert manifest["tool_versions"] == {"bandit": ["1.8.0"], "pylint": ["3.3.0"]}
    assert manifest["label_cutoff"] == manifest["exported_at"]


def test_every_row_has_a_split_and_no_task_is_in_both(labelled, tmp_path):
    for fmt in ("sft", "pairwise", "raw"):
        out = tmp_path / f"{fmt}.jsonl"
        export_labels(fmt=fmt, out=out)
        rows = rows_of(out)
        assert rows and all(row["split"] in ("train", "val") for row in rows)
        splits_per_task = {}
        for row in rows:
            splits_per_task.setdefault(row["task"], set()).add(row["split"])
        assert all(len(splits) == 1 for splits in splits_per_task.values()), fmt
        assert {s for splits in splits_per_task.values() for s in splits} == {"train", "val"}


def test_split_is_by_task_hash_and_a_small_export_still_gets_both_splits():
    names = [f"t{i}" for i in range(300)]
    natural = {name: "val" if _bucket(name) < VAL_SHARE else "train" for name in names}
    assert task_split(names) == natural  # enough tasks: the hash alone decides
    val = [n for n in names if natural[n] == "val"]
    train = [n for n in names if natural[n] == "train"]
    assert task_split(val[:1] + train[:1]) == {val[0]: "val", train[0]: "train"}
    both_train = task_split(train[:2])
    assert sorted(both_train.values()) == ["train", "val"]
    assert both_train == task_split(list(reversed(train[:2])))  # whatever the order they come in
    both_val = task_split(val[:2])
    assert sorted(both_val.values()) == ["train", "val"]
    assert task_split(train[:1]) == {train[0]: "train"}


def test_sft_row_teaches_the_latest_label_of_each_reviewer_averaged(labelled, reviewers, tmp_path):
    _, rolf = reviewers
    first = labelled[0]
    old = first.label_events.get(reviewer=rolf)
    make_label(first, rolf, {"correctness": 0.5, "style": 0.2}, final=0.5, supersedes=old, comment="second look")
    out = tmp_path / "sft.jsonl"
    export_labels(fmt="sft", out=out)
    row = next(r for r in rows_of(out) if r["patch"] == first.pk)
    verdict = json.loads(row["messages"][-1]["content"].splitlines()[-1])
    assert verdict["correctness"] == 0.7  # rita 0.9 and rolf's latest 0.5, not his first 0.7
    assert verdict["style"] == 0.2 and verdict["performance"] is None
    assert verdict["comment"] == "second look"
    assert row["source"] == "human" and row["labels"] == 2 and row["human_final"] == 0.7
    assert row["execution"]["correctness"] == 0.6  # what the tools measured rides along


def test_execution_rows_teach_what_the_tools_measured(labelled, tmp_path):
    out = tmp_path / "sft.jsonl"
    export_labels(fmt="sft", out=out, with_execution=True)
    executed = [r for r in rows_of(out) if r["source"] == "execution"]
    assert len(executed) == len(labelled)
    verdict = json.loads(executed[0]["messages"][-1]["content"].splitlines()[-1])
    assert verdict == {"correctness": 0.6, "style": 0.6, "performance": 0.6, "security": 0.6,
                       "comment": "The tools found nothing to act on."}  # fmt: skip


def test_exported_prompt_is_the_prompt_inference_builds(labelled, tmp_path):
    out = tmp_path / "sft.jsonl"
    export_labels(fmt="sft", out=out)
    for row in rows_of(out):
        patch = next(p for p in labelled if p.pk == row["patch"])
        task, diff, result = critic_input(patch)
        assert row["messages"][:-1] == build_messages(task=task, diff=diff, result=result)
        assert "Hidden tests: yes (names withheld)" in row["messages"][1]["content"]
    # Hidden test names reach neither the export nor the critic.
    assert "test_overflow" not in out.read_text()


def test_pairwise_pairs_patches_of_one_task_by_human_final_above_the_margin(reviewers, tmp_path):
    rita, _ = reviewers
    task = make_task("pairs")
    best, middle, worst = (make_patch(task, n) for n in range(3))
    for patch, final in ((best, 0.9), (middle, 0.75), (worst, 0.2)):
        make_label(patch, rita, {"correctness": final}, final=final)
    out = tmp_path / "pairwise.jsonl"
    manifest = export_labels(fmt="pairwise", out=out, min_margin=0.2)
    pairs = [(r["chosen_patch"], r["rejected_patch"], r["margin"]) for r in rows_of(out)]
    assert pairs == [(best.pk, worst.pk, 0.7), (middle.pk, worst.pk, 0.55)]  # 0.9 vs 0.75 is too close
    row = rows_of(out)[0]
    assert diff_for(0).strip() in row["chosen"][0]["content"] and diff_for(2).strip() in row["rejected"][0]["content"]
    assert row["prompt"][1]["content"].startswith("Task: pairs")
    assert manifest["filters"] == {"include_demo": False, "client": None, "min_margin": 0.2}
    export_labels(fmt="pairwise", out=out, min_margin=0.15)
    assert len(rows_of(out)) == 3


def test_demo_labels_are_exported_only_when_asked_for(reviewers, tmp_path):
    rita, _ = reviewers
    real = make_task("real")
    demo_task = make_task("demo-task", is_demo=True)
    make_label(make_patch(real, 0), rita, {"correctness": 1.0})
    make_label(make_patch(real, 1), rita, {"correctness": 0.5}, is_demo=True)  # a demo label
    make_label(make_patch(real, 2, is_demo=True), rita, {"correctness": 0.2})  # on a demo patch
    make_label(make_patch(demo_task, 3), rita, {"correctness": 0.0})  # of a demo task
    out = tmp_path / "sft.jsonl"
    assert export_labels(fmt="sft", out=out)["rows"] == 1
    assert export_labels(fmt="sft", out=out, include_demo=True)["rows"] == 4
    # raw keeps the real patch whose only label is a demo one, without that label.
    out = tmp_path / "raw.jsonl"
    export_labels(fmt="raw", out=out)
    assert [len(row["labels"]) for row in rows_of(out)] == [1, 0]
    export_labels(fmt="raw", out=out, include_demo=True)
    assert sorted(len(row["labels"]) for row in rows_of(out)) == [1, 1, 1, 1]


def test_a_label_made_after_the_cutoff_does_not_leak_into_a_re_export(labelled, reviewers, tmp_path):
    rita, _ = reviewers
    cutoff = timezone.now()
    first = tmp_path / "first.jsonl"
    before = export_labels(fmt="sft", out=first, cutoff=cutoff)
    patch = labelled[3]
    make_label(patch, rita, {"correctness": 0.0}, supersedes=patch.label_events.get(), comment="changed my mind")
    late_task = make_task("late")
    make_label(make_patch(late_task, 99), rita, {"correctness": 1.0})
    again = tmp_path / "again.jsonl"
    after = export_labels(fmt="sft", out=again, cutoff=cutoff)
    assert after["sha256"] == before["sha256"] and again.read_bytes() == first.read_bytes()
    assert after["label_cutoff"] == cutoff.isoformat() != after["exported_at"]
    now = export_labels(fmt="sft", out=tmp_path / "now.jsonl")
    assert now["rows"] == before["rows"] + 1
    assert "changed my mind" in (tmp_path / "now.jsonl").read_text()


def test_a_cutoff_in_the_future_is_refused(tmp_path):
    from exports.services import ExportError

    with pytest.raises(ExportError, match="in the future"):
        export_labels(fmt="sft", out=tmp_path / "x.jsonl", cutoff=timezone.now() + timedelta(hours=1))


def test_a_broken_task_label_is_no_training_signal(reviewers, tmp_path):
    rita, rolf = reviewers
    task = make_task("broken")
    patch = make_patch(task, 0)
    make_label(patch, rita, {"correctness": 1.0})
    make_label(patch, rolf, {}, task_broken=True)
    out = tmp_path / "sft.jsonl"
    manifest = export_labels(fmt="sft", out=out)
    assert manifest["rows"] == 0 and manifest["skipped"] == {"task_broken": 1}
    raw = export_labels(fmt="raw", out=tmp_path / "raw.jsonl")
    assert raw["rows"] == 1  # raw keeps everything


def test_raw_holds_automatic_and_human_with_reviewers_pseudonymised(labelled, reviewers, tmp_path):
    rita, rolf = reviewers
    out = tmp_path / "raw.jsonl"
    export_labels(fmt="raw", out=out)
    text = out.read_text()
    assert "rita" not in text and "rolf" not in text
    rows = rows_of(out)
    first = next(r for r in rows if r["patch"] == labelled[0].pk)
    names = {label["reviewer"] for label in first["labels"]}
    assert names == {reviewer_pseudonym(rita.pk), reviewer_pseudonym(rolf.pk)} and len(names) == 2
    assert first["automatic"]["subscores"]["correctness"]["score"] == 0.6
    assert "test_overflow" in first["automatic"]["subscores"]["correctness"]["evidence_json"]  # admins only
    assert first["human"]["labels"] == 2 and first["diff"] == labelled[0].diff
    # Stable: the same reviewer has the same pseudonym in every row and every export.
    export_labels(fmt="raw", out=tmp_path / "again.jsonl")
    assert rows_of(tmp_path / "again.jsonl") == rows
    assert {lab["reviewer"] for r in rows if r is not first for lab in r["labels"]} == {reviewer_pseudonym(rita.pk)}
    with override_settings(SECRET_KEY="another deployment"):
        assert reviewer_pseudonym(rita.pk) not in names  # keyed: not guessable from the id alone


def test_datasets_loads_each_format(labelled, tmp_path):
    from datasets import load_dataset

    for fmt, columns in (
        ("sft", {"messages", "split", "source", "execution"}),
        ("pairwise", {"prompt", "chosen", "rejected", "split"}),
        ("raw", {"diff", "automatic", "human", "labels", "split"}),
    ):
        out = tmp_path / f"{fmt}.jsonl"
        manifest = export_labels(fmt=fmt, out=out, with_execution=True)
        dataset = load_dataset("json", data_files=str(out), cache_dir=str(tmp_path / "cache"))["train"]
        assert len(dataset) == manifest["rows"], fmt
        assert columns <= set(dataset.column_names), fmt
        assert dataset.filter(lambda r: r["split"] == "val").num_rows == manifest["counts"]["val"], fmt


def _peak_bytes(rows: int, tmp_path) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        manifest = export_labels(fmt="sft", out=tmp_path / f"{rows}.jsonl")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert manifest["rows"] == rows
    return peak


@pytest.mark.slow
def test_export_streams_in_constant_memory(reviewers, tmp_path):
    rita, _ = reviewers
    task = make_task("volume")
    bulk_labelled(task, rita, 5_000)
    small = _peak_bytes(5_000, tmp_path)
    bulk_labelled(task, rita, 15_000, start=5_000)
    large = _peak_bytes(20_000, tmp_path)
    assert large < 10 * 2**20, f"peak {large / 2**20:.1f} MB for 20k rows"
    # Four times the rows, nowhere near four times the memory: the rows are never all held.
    print(f"tracemalloc peak: {small / 2**20:.1f} MB for 5k rows, {large / 2**20:.1f} MB for 20k rows")
    assert large < 1.5 * small, f"peak grew from {small / 2**20:.1f} MB to {large / 2**20:.1f} MB"
