"""import_tasks: a dataset of MBPP-shaped rows becomes gradeable tasks, with a summary of what was refused."""

from __future__ import annotations

import ast
import difflib
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from scoring.core.intake.dataset_tasks import RowRefused, draft_from_row
from scoring.models import Task

PROBLEM = "Write a function to find the shared elements from the given two lists."
SOLUTION = (
    "def similar_elements(test_tup1, test_tup2):\n  res = tuple(set(test_tup1) & set(test_tup2))\n  return (res)\n"
)
TESTS = [
    "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == {4, 5}",
    "assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == {3, 4}",
    "assert set(similar_elements((11, 12, 14, 13),(17, 15, 14, 13))) == {13, 14}",
]
GOOD = [
    {"task_id": 2, "text": PROBLEM, "code": SOLUTION, "test_list": TESTS, "test_setup_code": "",
     "challenge_test_list": []},
    {"task_id": 3, "text": "Write a python function to double a number.", "code": "def double(x):\n    return 2 * x\n",
     "test_list": ["assert double(2) == 4"], "test_setup_code": "", "challenge_test_list": []},
    {"task_id": 4, "text": "Write a function to add.", "code": "import math\n\ndef add(a, b):\n    return a + b\n",
     "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"], "test_setup_code": "",
     "challenge_test_list": ["assert add(-1, 1) == 0"]},
]  # fmt: skip
BAD = [
    {"task_id": 10, "text": "No tests here.", "code": "def f():\n    return 1\n", "test_list": []},
    {"task_id": 11, "text": "Broken solution.", "code": "def f(:\n", "test_list": ["assert f() == 1"]},
    {"task_id": 12, "text": "Tests that are not asserts.", "code": "def f():\n    return 1\n",
     "test_list": ["print(f())"]},
    {"task_id": 13, "text": "Tests call a name the solution lacks.", "code": "def f():\n    return 1\n",
     "test_list": ["assert g() == 1"]},
    {"task_id": 2, "text": PROBLEM, "code": SOLUTION, "test_list": TESTS},  # the same name twice
]  # fmt: skip


def _jsonl(path: Path, rows: list) -> Path:  # type: ignore[type-arg]  # rows of any JSON shape
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + "{not json\n")
    return path


def _import(*args: str) -> dict:  # type: ignore[type-arg]  # the command's JSON summary, any shape
    out = StringIO()
    call_command("import_tasks", *args, "--json", stdout=out, stderr=StringIO())
    return json.loads(out.getvalue())


@pytest.mark.django_db
def test_mbpp_rows_become_tasks_with_held_out_tests_and_refusals_are_summarised(tmp_path):
    data = _jsonl(tmp_path / "mbpp.jsonl", GOOD + BAD)
    summary = _import(str(data), "--prefix", "mbpp-")
    assert (summary["created"], summary["existing"], summary["refused"]) == (3, 0, 6)
    reasons = {item["row"]: item["reason"] for item in summary["refused_rows"]}
    assert reasons[4].startswith("no tests")
    assert reasons[5].startswith("solution is not Python")
    assert reasons[6].startswith("tests: not a single assert statement")
    assert reasons[7] == "the tests call no function the solution defines"
    assert reasons[8] == "duplicate name 'mbpp-2' in this dataset"
    assert reasons[9].startswith("line 9 is not JSON")
    tasks = {task.name: task for task in Task.objects.all()}
    assert set(tasks) == {"mbpp-2", "mbpp-3", "mbpp-4"}
    assert tasks["mbpp-2"].hidden_sha256 and tasks["mbpp-4"].hidden_sha256  # last assert (and challenges) held out
    assert not tasks["mbpp-3"].hidden_sha256  # one assert: nothing to spare

    # Idempotent: a second run finds everything in place and changes nothing.
    again = _import(str(data), "--prefix", "mbpp-")
    assert (again["created"], again["existing"], again["refused"]) == (0, 3, 6)
    assert Task.objects.count() == 3


@pytest.mark.django_db
def test_a_hugging_face_dataset_saved_to_disk_imports_with_a_column_map(tmp_path):
    from datasets import Dataset

    renamed = [
        {"id": r["task_id"], "question": r["text"], "answer": r["code"], "asserts": r["test_list"]} for r in GOOD
    ]
    Dataset.from_list(renamed).save_to_disk(str(tmp_path / "ds"))
    summary = _import(str(tmp_path / "ds"), "--columns", "name=id,prompt=question,solution=answer,tests=asserts")
    assert (summary["created"], summary["refused"]) == (3, 0)
    with pytest.raises(CommandError, match="column map item 'bogus=x'"):
        _import(str(tmp_path / "ds"), "--columns", "bogus=x")
    with pytest.raises(CommandError, match="no such file"):
        _import(str(tmp_path / "missing.jsonl"))


@pytest.mark.parametrize(
    "problem",
    ['Ends the docstring """\nimport os\nos.system("touch /tmp/pwned")\n"""', "A trailing backslash \\"],
    ids=["triple-quote", "backslash"],
)
def test_problem_text_cannot_inject_code_into_the_base_module(problem):
    draft = draft_from_row({"task_id": 1, "text": problem, "code": SOLUTION, "test_list": TESTS})
    tree = ast.parse(draft.stub)
    # Only a docstring and the stubbed function: nothing from the problem text runs.
    assert [type(node).__name__ for node in tree.body] == ["Expr", "FunctionDef"]
    assert isinstance(tree.body[0].value, ast.Constant) and "import os" not in ast.unparse(tree.body[1])
    with pytest.raises(RowRefused):
        draft_from_row({"task_id": 1, "text": "p", "code": SOLUTION, "test_list": ["assert True; import os"]})


@pytest.mark.slow
def test_an_imported_task_fails_on_its_stub_and_passes_with_its_reference(tmp_path, capsys):
    """The real pipeline (score_patch): the base stub fails every test, the row's own solution fixes them all,
    hidden ones included."""
    draft = draft_from_row(GOOD[0], prefix="mbpp-")
    folder = draft.write(tmp_path / "task")
    (folder / "task.json").write_text(json.dumps(draft.spec()))
    stub = (folder / "repo" / "solution.py").read_text().splitlines(keepends=True)
    fixed = SOLUTION.splitlines(keepends=True)
    diff = "".join(difflib.unified_diff(stub, fixed, "a/solution.py", "b/solution.py"))
    (folder / "fix.diff").write_text(diff)
    call_command("score_patch", "--task", str(folder / "task.json"), "--patch", str(folder / "fix.diff"), "--json")
    result = json.loads(capsys.readouterr().out)
    correctness = result["subscores"]["correctness"]
    assert correctness["score"] == 1.0, correctness["rationale"]
    assert any("3 F2P" in step or "3 of 3 F2P" in step for step in correctness["rationale"]), correctness["rationale"]


@pytest.mark.django_db
def test_the_api_imports_a_jsonl_upload_and_says_what_it_refused(api, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile

    def post(rows: list, **fields: str):  # type: ignore[type-arg]  # rows of any JSON shape
        upload = SimpleUploadedFile("tasks.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
        return api.post("/api/v1/tasks/import/", {"data": upload, **fields}, format="multipart")

    response = post([GOOD[1], BAD[0]], prefix="api-")
    assert response.status_code == 200, response.content
    assert response.json()["created"] == 1 and response.json()["refused_by_reason"] == {"no tests": 1}
    assert Task.objects.filter(name="api-3").exists()
    assert post([GOOD[1]], prefix="api-").json()["existing"] == 1
    refused = post([GOOD[1]], columns="nonsense")
    assert refused.status_code == 400 and "column map item" in json.dumps(refused.json())
