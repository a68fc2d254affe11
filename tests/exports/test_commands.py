"""export_labels, train_critic and eval_critic as an admin types them: files written, bad input exits 2."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from exports.services import manifest_path
from tests.conftest import ROOT, service_env
from tests.exports.factories import make_label, make_patch, make_task

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def bad(*args: str) -> str:
    """The message of a command refused as bad input (exit status 2)."""
    with pytest.raises(CommandError) as caught:
        run(*args)
    assert caught.value.returncode == 2, caught.value
    return str(caught.value)


def test_export_labels_writes_the_file_and_its_manifest(make_user, tmp_path):
    rita, _ = make_user("rita", "reviewer")
    make_label(make_patch(make_task("gcd"), 0), rita, {"correctness": 0.8}, comment="fine")
    out = tmp_path / "nested" / "sft.jsonl"
    printed = run("export_labels", "--format", "sft", "--out", str(out), "--no-progress")
    assert "Wrote 1 sft rows" in printed and str(manifest_path(out)) in printed
    assert json.loads(manifest_path(out).read_text())["rows"] == 1
    assert json.loads(out.read_text())["split"] == "train"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "csv"], "unknown format 'csv'"),
        (["--format", "sft", "--cutoff", "yesterday"], "not an ISO 8601"),
        (["--format", "sft", "--cutoff", "2999-01-01T00:00:00Z"], "in the future"),
        (["--format", "pairwise", "--min-margin", "0"], "min_margin must be in (0, 1]"),
    ],
)
def test_export_labels_refuses_bad_input_with_exit_2(tmp_path, args, message):
    assert message in bad("export_labels", *args, "--out", str(tmp_path / "x.jsonl"))
    assert not (tmp_path / "x.jsonl").exists()


def test_export_labels_refuses_a_directory_as_output(tmp_path):
    assert "is a directory" in bad("export_labels", "--format", "raw", "--out", str(tmp_path))


def test_export_labels_exits_2_with_a_message_from_the_shell(tmp_path):
    done = subprocess.run(
        [sys.executable, "manage.py", "export_labels", "--format", "parquet", "--out", str(tmp_path / "x.jsonl")],
        cwd=ROOT,
        env=service_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "unknown format 'parquet'; choose one of sft, pairwise, raw" in done.stderr


def test_train_critic_refuses_missing_data_or_model_with_exit_2(tmp_path):
    data = tmp_path / "sft.jsonl"
    assert "no such file" in bad("train_critic", "--data", str(data), "--base-model", str(tmp_path), "--out", "o")
    data.write_text("")
    message = bad("train_critic", "--data", str(data), "--base-model", str(tmp_path / "none"), "--out", "o")
    assert "not a Hugging Face model folder" in message
    (tmp_path / "config.json").write_text("{}")
    message = bad("train_critic", "--data", str(data), "--base-model", str(tmp_path), "--out", "o", "--lr", "0")
    assert "--lr must be positive" in message
    message = bad("train_critic", "--data", str(data), "--base-model", str(tmp_path), "--out", "o", "--max-steps", "0")
    assert "--max-steps must be a positive" in message


def test_eval_critic_refuses_missing_data_or_model_with_exit_2(tmp_path):
    data = tmp_path / "sft.jsonl"
    assert "no such file" in bad("eval_critic", "--model", str(tmp_path), "--data", str(data))
    data.write_text("")
    assert "not a Hugging Face model folder" in bad("eval_critic", "--model", str(tmp_path), "--data", str(data))
