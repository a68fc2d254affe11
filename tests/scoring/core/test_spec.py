"""Task specs through parse_spec: the CLI form, the API form, and every way a spec can be wrong."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from scoring.core.intake.spec import SpecError, TaskSpec, parse_spec

MINIMAL = {"name": "gcd", "test_command": "python -m pytest -q tests"}


def api_refused(**fields: Any) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec({**MINIMAL, **fields}, api=True)
    return str(caught.value)


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "pylintrc").write_text("[MAIN]\n")
    (tmp_path / "hidden").mkdir()
    return tmp_path


def test_cli_spec_resolves_paths_against_its_folder(spec_dir: Path) -> None:
    text = json.dumps(
        {
            **MINIMAL,
            "repo": "repo",
            "hidden_tests": "hidden",
            "hidden_test_command": "pytest -q hidden",
            "benchmark_command": "python bench/run.py",
            "requirements": ["numpy==2.4.6", "attrs>=23; python_version >= '3.10'"],
            "protected_paths": ["tests/**", "data/*.json"],
            "lint_config": "pylintrc",
            "labels_per_item": 3,
            "timeout_s": 120,
        }
    )
    spec = parse_spec(text, spec_dir=spec_dir)
    assert spec.repo == (spec_dir / "repo").resolve() and spec.hidden_tests == (spec_dir / "hidden").resolve()
    assert spec.requirements == ("numpy==2.4.6", "attrs>=23; python_version >= '3.10'")
    assert spec.labels_per_item == 3 and spec.timeout_s == 120
    assert spec.argv(spec.benchmark_command or "") == ["python", "bench/run.py"]


def test_stored_form_drops_local_paths_and_reads_back_through_the_api(spec_dir: Path) -> None:
    spec = parse_spec({**MINIMAL, "repo": "repo", "requirements": ["numpy"]}, spec_dir=spec_dir)
    stored = spec.to_json()
    assert "repo" not in stored and "hidden_tests" not in stored
    assert stored["requirements"] == ["numpy"] and stored["timeout_s"] == 60
    assert parse_spec(json.dumps(stored).encode(), api=True) == spec


def test_defaults_apply_to_a_minimal_api_spec() -> None:
    assert parse_spec(MINIMAL, api=True) == TaskSpec(name="gcd", test_command="python -m pytest -q tests")


def test_unknown_keys_are_named() -> None:
    message = api_refused(timeout=5, extra_flags=[])
    assert message.startswith("extra_flags, timeout: unknown key(s)")


@pytest.mark.parametrize("key", ["repo", "hidden_tests"])
def test_api_spec_must_not_carry_local_paths(key: str) -> None:
    message = api_refused(**{key: "/srv/repo"})
    assert message.startswith(f"{key}: not allowed in the API spec") and "multipart" in message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("name", 7, "name: must be a string, not a number"),
        ("test_command", ["pytest"], "test_command: must be a string, not a list"),
        ("requirements", "numpy", "requirements: must be a list of strings, not a string"),
        ("requirements", [1], "requirements[0]: must be a string"),
        ("protected_paths", {"a": 1}, "protected_paths: must be a list of strings, not an object"),
        ("labels_per_item", True, "labels_per_item: must be an integer, not a boolean"),
        ("timeout_s", "60", "timeout_s: must be an integer, not a string"),
        ("timeout_s", 1.5, "timeout_s: must be an integer, not a number"),
    ],
)
def test_wrong_types_are_refused_with_the_field_name(field: str, value: Any, expected: str) -> None:
    assert api_refused(**{field: value}).startswith(expected)


@pytest.mark.parametrize("field", ["test_command", "hidden_test_command", "benchmark_command"])
@pytest.mark.parametrize("value", ["", "   ", "''"])
def test_empty_commands_are_refused(field: str, value: str) -> None:
    assert api_refused(**{field: value}).startswith(f"{field}: must not be empty")


def test_missing_required_fields_are_named() -> None:
    with pytest.raises(SpecError, match="^" + re.escape("test_command: required")):
        parse_spec({"name": "gcd"}, api=True)
    with pytest.raises(SpecError, match="^" + re.escape("name: required")):
        parse_spec({"test_command": "pytest"}, api=True)


@pytest.mark.parametrize("name", ["has space", "../up", ".hidden", "x" * 101, "naïve", ""])
def test_name_must_be_a_slug(name: str) -> None:
    assert api_refused(name=name).startswith("name: ")


@pytest.mark.parametrize("command", ["python tests/run_all.py", "make test", "python -m unittest", "pytestx -q"])
def test_test_command_must_run_pytest(command: str) -> None:
    assert "must be a pytest invocation" in api_refused(test_command=command)


@pytest.mark.parametrize("command", ["pytest -q tests", "python3 -m pytest", "python -m pytest -x -k 'not slow'"])
def test_pytest_invocations_are_accepted(command: str) -> None:
    assert parse_spec({**MINIMAL, "test_command": command}, api=True).test_command == command


@pytest.mark.parametrize(
    ("field", "command", "token"),
    [
        ("test_command", "pytest; curl evil.example", ";"),
        ("test_command", "pytest | tee log", "|"),
        ("benchmark_command", "python bench.py && rm -rf /", "&"),
        ("benchmark_command", "python `which bench`", "`"),
        ("hidden_test_command", "pytest $(cat list)", "$"),
        ("benchmark_command", "python bench.py > out", ">"),
    ],
)
def test_shell_syntax_in_commands_is_refused(field: str, command: str, token: str) -> None:
    message = api_refused(**{field: command})
    assert message.startswith(f"{field}: shell syntax {token!r} is not allowed")


@pytest.mark.parametrize("field", ["test_command", "benchmark_command", "lint_config"])
def test_text_no_database_could_store_is_refused(field: str) -> None:
    """JSON can carry a lone surrogate ('\\ud800') and NUL ('\\u0000'); the stored spec could hold neither."""
    for bad, expected in (("\ud800", "not valid UTF-8"), ("\x00", "NUL character")):
        spec = {"name": "t", "test_command": "pytest", field: f"pytest {bad}"}
        with pytest.raises(SpecError, match=f"{field}: .*{expected}"):
            parse_spec(json.dumps(spec), api=True)


def test_unbalanced_quotes_are_refused() -> None:
    assert api_refused(test_command="pytest -k 'oops").startswith("test_command: cannot be split")


@pytest.mark.parametrize(
    ("requirement", "expected"),
    [
        ("-e .", "pip options"),
        ("--index-url https://evil.example/simple", "pip options"),
        ("pkg @ https://evil.example/pkg.whl", "points to a URL or path"),
        ("pkg @ file:///tmp/pkg", "points to a URL or path"),
        ("./local/pkg", "is not a PEP 508 requirement"),
        ("numpy >=> 1", "is not a PEP 508 requirement"),
    ],
)
def test_requirements_must_be_plain_pep508_names(requirement: str, expected: str) -> None:
    message = api_refused(requirements=["numpy", requirement])
    assert message.startswith("requirements[1]: ") and expected in message


@pytest.mark.parametrize(("field", "value"), [("protected_paths", ["/etc/*"]), ("protected_paths", ["a/../../*"])])
def test_protected_paths_stay_inside_the_repository(field: str, value: list[str]) -> None:
    assert api_refused(**{field: value}).startswith("protected_paths[0]: ")


@pytest.mark.parametrize("value", ["../pylintrc", "/etc/pylintrc", "cfg\\..\\x"])
def test_lint_config_is_a_relative_path_inside_the_repository(value: str) -> None:
    assert api_refused(lint_config=value).startswith("lint_config: ")


@pytest.mark.parametrize(
    ("field", "value"),
    [("labels_per_item", 0), ("labels_per_item", 6), ("timeout_s", 0), ("timeout_s", 3601)],
)
def test_numbers_out_of_range_are_refused(field: str, value: int) -> None:
    assert api_refused(**{field: value}).startswith(f"{field}: must be between")


def test_cli_spec_needs_an_existing_repo(spec_dir: Path) -> None:
    with pytest.raises(SpecError, match="^" + re.escape("repo: required")):
        parse_spec(MINIMAL, spec_dir=spec_dir)
    with pytest.raises(SpecError, match="^" + re.escape("repo: 'nowhere' does not exist")):
        parse_spec({**MINIMAL, "repo": "nowhere"}, spec_dir=spec_dir)
    with pytest.raises(SpecError, match="^" + re.escape("hidden_tests: 'gone' does not exist")):
        parse_spec({**MINIMAL, "repo": "repo", "hidden_tests": "gone"}, spec_dir=spec_dir)


def test_cli_lint_config_must_be_in_the_repo_folder(spec_dir: Path) -> None:
    with pytest.raises(SpecError, match="^" + re.escape("lint_config: 'missingrc' is not a file")):
        parse_spec({**MINIMAL, "repo": "repo", "lint_config": "missingrc"}, spec_dir=spec_dir)


@pytest.mark.parametrize(("data", "expected"), [("{not json", "spec: not valid JSON"), ("[1, 2]", "spec: must be")])
def test_malformed_json_is_refused(data: str, expected: str) -> None:
    with pytest.raises(SpecError, match=f"^{expected}"):
        parse_spec(data, api=True)


def test_a_spec_file_may_say_shared_which_stays_out_of_the_stored_form() -> None:
    spec = parse_spec({"name": "x", "test_command": "pytest -q", "shared": True}, api=True)
    assert spec.shared is True
    assert "shared" not in spec.to_json()  # the service keeps it on the Task: it never changes the cache key
    assert spec == parse_spec({"name": "x", "test_command": "pytest -q"}, api=True)


def test_shared_must_be_a_boolean() -> None:
    with pytest.raises(SpecError, match=r"^shared: must be true or false"):
        parse_spec({"name": "x", "test_command": "pytest -q", "shared": "yes"}, api=True)
