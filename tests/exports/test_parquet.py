"""Exports load at any size: a Parquet copy typed over every row, where `load_dataset("json")` gives up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import load_dataset
from datasets.exceptions import DatasetGenerationError

from exports.parquet import parquet_path, write_parquet
from exports.services import export_labels, manifest_path
from tests.exports.test_exports import labelled, reviewers  # noqa: F401 - fixtures


def _big_export_with_nulls_first(path: Path) -> int:
    """A JSONL over 20 MB whose first ~12 MB of rows hold nulls where later rows hold numbers and objects."""
    rows = 0
    filler = "x" * 900
    with path.open("w") as handle:
        while path.stat().st_size < 12 << 20 if path.exists() else True:
            handle.write(json.dumps({"split": "train", "task": "t", "score": None, "human": None, "text": filler}))
            handle.write("\n")
            rows += 1
            if rows % 1000 == 0:
                handle.flush()
        while path.stat().st_size < 21 << 20:
            human = {"final_score": 0.5, "labels": 2, "comment": "ok"}
            handle.write(json.dumps({"split": "val", "task": "u", "score": 0.75, "human": human, "text": filler}))
            handle.write("\n")
            rows += 1
            if rows % 1000 == 0:
                handle.flush()
    return rows


@pytest.mark.slow
def test_an_export_over_20_mb_whose_first_rows_hold_nulls_loads_from_its_parquet_copy(tmp_path: Path) -> None:
    jsonl = tmp_path / "raw.jsonl"
    rows = _big_export_with_nulls_first(jsonl)
    assert jsonl.stat().st_size > 20 << 20
    with pytest.raises(DatasetGenerationError, match="generating the dataset"):  # "Couldn't cast double to null"
        load_dataset("json", data_files=str(jsonl), split="train", cache_dir=str(tmp_path / "hf-json"))

    info = write_parquet(jsonl, parquet_path(jsonl))

    assert info["rows"] == rows and "error" not in info
    data = load_dataset("parquet", data_files=str(parquet_path(jsonl)), split="train", cache_dir=str(tmp_path / "hf"))
    assert len(data) == rows
    assert data[0]["score"] is None and data[rows - 1]["score"] == 0.75
    assert data[rows - 1]["human"]["final_score"] == 0.5


def test_rows_that_admit_no_one_schema_say_so_and_leave_no_file(tmp_path: Path) -> None:
    jsonl = tmp_path / "mixed.jsonl"
    jsonl.write_text(json.dumps({"split": "train", "v": 1}) + "\n" + json.dumps({"split": "train", "v": "text"}) + "\n")
    info = write_parquet(jsonl, parquet_path(jsonl), chunk_rows=1)
    assert "no single Parquet schema" in info["error"]
    assert not parquet_path(jsonl).exists()


@pytest.mark.django_db
def test_every_export_gets_a_parquet_copy_named_in_its_manifest(labelled, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "sft.jsonl"
    manifest = export_labels(fmt="sft", out=out)
    assert manifest["parquet"]["file"] == "sft.parquet" and manifest["parquet"]["rows"] == manifest["rows"]
    assert json.loads(manifest_path(out).read_text())["parquet"] == manifest["parquet"]
    data = load_dataset("parquet", data_files=str(parquet_path(out)), split="train", cache_dir=str(tmp_path / "hf"))
    assert len(data) == manifest["rows"] and set(data["split"]) <= {"train", "val"}


def test_a_column_that_appears_only_in_later_rows_is_kept(tmp_path: Path) -> None:
    jsonl = tmp_path / "late.jsonl"
    rows = [{"split": "train"}, {"split": "val", "late": {"k": 1}}]
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    info = write_parquet(jsonl, parquet_path(jsonl), chunk_rows=10)
    data = load_dataset("parquet", data_files=str(parquet_path(jsonl)), split="train", cache_dir=str(tmp_path / "hf"))
    assert info["rows"] == 2 and data[1]["late"] == {"k": 1} and data[0]["late"] is None
