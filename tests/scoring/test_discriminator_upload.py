"""A task's reference through the doors users take: API upload (400 when refused), score_patch (exit 2), workers."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from scoring import services
from scoring.core.trees import pack_tree
from scoring.models import Task
from tests.helpers import TINY

FIX = (TINY / "fix.diff").read_text()
HARD_CODED = FIX.replace("+    return a + b", "+    return 5 if (a, b) == (2, 3) else a - b")
NOT_APPLYING = FIX.replace("-    return a - b", "-    return a * b")
FAILING = FIX.replace("+    return a + b", "+    return a * b")


def _file(data: bytes, name: str) -> io.BytesIO:
    stream = io.BytesIO(data)
    stream.name = name
    return stream


def _post(client, tmp_path, spec_json: str, reference: bytes | None):
    repo = _file(pack_tree(TINY / "repo", tmp_path / "repo.tar.gz").read_bytes(), "repo.tar.gz")
    form = {"spec": spec_json, "repo": repo}
    if reference is not None:
        form["reference"] = _file(reference, "reference.diff")
    return client.post("/api/v1/tasks/", form, format="multipart")


@pytest.fixture
def admin_client(make_user):
    from rest_framework.test import APIClient

    admin, _ = make_user("ada", "admin")
    client = APIClient()
    client.force_authenticate(admin)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("reference", "message"),
    [(NOT_APPLYING, "reference: the reference diff does not apply"), (FAILING, "fails the visible tests")],
    ids=["does-not-apply", "fails-the-visible-tests"],
)
def test_upload_refuses_a_bad_reference_with_a_clear_400(admin_client, tmp_path, spec_json, reference, message):
    response = _post(admin_client, tmp_path, spec_json, reference.encode())
    assert response.status_code == 400, response.content
    assert message in response.content.decode()
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_upload_keeps_a_good_reference_hidden_and_workers_score_with_it(admin_client, tmp_path, spec_json):
    response = _post(admin_client, tmp_path, spec_json, (TINY / "fix.diff").read_bytes())
    assert response.status_code == 201, response.content
    assert "reference" not in json.dumps(response.json()["spec"])
    task = Task.objects.get(name="tiny")
    assert task.reference_sha256
    spec = services.task_spec(task)
    assert spec.reference is not None and spec.reference.read_bytes() == (TINY / "fix.diff").read_bytes()


@pytest.mark.parametrize(
    ("reference", "message"),
    [(NOT_APPLYING, "does not apply"), (FAILING, "fails the visible tests")],
    ids=["does-not-apply", "fails-the-visible-tests"],
)
def test_score_patch_exits_2_on_a_bad_reference(tmp_path, reference, message):
    (tmp_path / "reference.diff").write_text(reference)
    spec = json.loads((TINY / "spec.json").read_text())
    spec.update(repo=str(TINY / "repo"), hidden_tests=str(TINY / "hidden"), reference="reference.diff")
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(CommandError) as excinfo:
        call_command("score_patch", "--task", str(tmp_path / "spec.json"), "--patch", str(TINY / "fix.diff"))
    assert excinfo.value.returncode == 2
    assert message in str(excinfo.value)


def test_score_patch_with_a_reference_flags_hard_coded_answers(tmp_path, capsys):
    (tmp_path / "reference.diff").write_text((TINY / "fix.diff").read_text())
    (tmp_path / "hard.diff").write_text(HARD_CODED)
    spec = json.loads((TINY / "spec.json").read_text())
    spec.update(repo=str(TINY / "repo"), reference="reference.diff")
    spec.pop("hidden_tests")
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    call_command("score_patch", "--task", str(tmp_path / "spec.json"), "--patch", str(tmp_path / "hard.diff"), "--json")
    result = json.loads(capsys.readouterr().out)
    correctness = result["subscores"]["correctness"]
    assert "overfit" in result["flags"]
    assert correctness["score"] < 0.5
    assert correctness["evidence"]["discriminator"]["counterexamples"][0]["call"].startswith("add(")
    assert "add(" in result["comments"]


@pytest.mark.django_db
@pytest.mark.parametrize("as_folder", [False, True], ids=["diff-file", "folder-of-files"])
def test_cli_specs_register_their_reference_as_a_diff_or_a_folder(tmp_path, as_folder):
    from scoring.core.intake.spec import parse_spec

    if as_folder:
        files = tmp_path / "reference" / "calc"
        files.mkdir(parents=True)
        fixed = (TINY / "repo" / "calc" / "__init__.py").read_text().replace("return a - b", "return a + b")
        (files / "__init__.py").write_text(fixed)
        reference = "reference"
    else:
        (tmp_path / "reference.diff").write_text(FIX)
        reference = "reference.diff"
    spec = json.loads((TINY / "spec.json").read_text())
    spec.update(repo=str(TINY / "repo"), hidden_tests=str(TINY / "hidden"), reference=reference)
    task = services.task_create_from_dirs(spec=parse_spec(spec, spec_dir=tmp_path))
    stored = services.task_spec(task).reference
    assert stored is not None and stored.is_file()
    assert (stored.read_bytes() == FIX.encode()) is not as_folder
