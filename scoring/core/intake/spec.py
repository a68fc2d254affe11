"""The task spec (docs/contract.md, "Task spec"): one schema for the CLI (a JSON file) and the API (a form field).

`parse_spec` validates untrusted JSON into a frozen TaskSpec. Every SpecError message starts with the field
it is about. Commands never reach a shell: they are split with shlex and run as argv, and shell syntax in
them is refused so that nobody is surprised by it doing nothing.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from scoring.core.intake.text import unstorable

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SHELL_SYNTAX = (";", "|", "&", "`", "$", "<", ">", "\n", "\r")
#: How a test command may start (the harness runs each as `python -m pytest`).
PYTEST_PREFIXES = (("pytest",), ("python", "-m", "pytest"), ("python3", "-m", "pytest"))
_LOCAL_PATH_FIELDS = ("repo", "hidden_tests", "reference")
_MAX_LIST = 200
_MAX_TEXT = 1000
#: "package.module:function": what the discriminator calls.
_ENTRY_POINT = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
#: The author's extra discriminator cases: how many, and how large a file of them may be.
_MAX_INPUTS = 1000
_MAX_INPUTS_BYTES = 1 << 20
_OPTIONAL_LISTS = ("entry_points", "inputs")


class SpecError(ValueError):
    """The spec is refused; the message starts with the field it is about."""


@dataclass(frozen=True)
class TaskSpec:
    """A validated task spec. `repo`, `hidden_tests` and `reference` are local paths, set only for a CLI spec (the
    service sets `reference` to its stored copy before scoring).

    Two specs are equal when their stored forms are (the local paths do not take part in the comparison).
    `inputs` holds the author's extra discriminator cases, each as canonical JSON text
    ({"entry_point": "pkg.mod:f" or null, "args": [...], "kwargs": {...}}), so that the spec stays hashable.
    """

    name: str
    test_command: str
    hidden_test_command: str | None = None
    benchmark_command: str | None = None
    requirements: tuple[str, ...] = ()
    protected_paths: tuple[str, ...] = ()
    lint_config: str | None = None
    labels_per_item: int = 1
    timeout_s: int = 60
    entry_points: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    #: Other clients may see and score the task. The service's business (Task.shared), not the pipeline's: it is
    #: not part of the stored form, so it never changes a task's cache key.
    shared: bool = field(default=False, compare=False)
    repo: Path | None = field(default=None, compare=False)
    hidden_tests: Path | None = field(default=None, compare=False)
    reference: Path | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        """Return the stored form: all fields but the local paths; parse_spec(..., api=True) reads it back."""
        data: dict[str, Any] = {}
        for spec_field in fields(self):
            if spec_field.name in _LOCAL_PATH_FIELDS or spec_field.name == "shared":
                continue
            value = getattr(self, spec_field.name)
            if spec_field.name in _OPTIONAL_LISTS and not value:
                continue  # absent rather than empty, so specs written before these fields keep their stored form
            if spec_field.name == "inputs":
                value = [json.loads(item) for item in value]
            data[spec_field.name] = list(value) if isinstance(value, tuple) else value
        return data

    def argv(self, command: str) -> list[str]:
        """Split one of this spec's commands into the argv it runs as (no shell)."""
        return shlex.split(command)


def parse_spec(data: Mapping[str, Any] | str | bytes, *, spec_dir: Path | None = None, api: bool = False) -> TaskSpec:
    """Validate a spec and return it, or raise SpecError naming the field that is wrong.

    CLI (`api=False`): "repo" is required and "repo" / "hidden_tests" / "reference" resolve against `spec_dir`
    (default: the current folder) and must exist; "inputs" may be a JSONL file there. API (`api=True`): those
    three keys are refused (the files come as multipart fields) and "inputs" must be inline.
    """
    raw = _load(data)
    _check_keys(raw, api=api)
    values: dict[str, Any] = {}
    for key, check in _CHECKS.items():
        if key == "inputs" and raw.get(key) is not None:
            values[key] = _inputs(raw[key], spec_dir=spec_dir, api=api)
        elif raw.get(key) is not None:
            values[key] = check(key, raw[key])
        elif key in _REQUIRED:
            raise SpecError(f"{key}: required")
    if not api:
        base = Path(spec_dir) if spec_dir is not None else Path.cwd()
        if raw.get("repo") is None:
            raise SpecError("repo: required (a folder or a .tar.gz / .zip archive)")
        values["repo"] = _local_path("repo", raw["repo"], base)
        for key in ("hidden_tests", "reference"):
            if raw.get(key) is not None:
                values[key] = _local_path(key, raw[key], base)
        _check_lint_config_exists(values)
    return TaskSpec(**values)


def _load(data: Mapping[str, Any] | str | bytes) -> Mapping[str, Any]:
    """Decode JSON text if needed and insist on an object."""
    if isinstance(data, (str, bytes, bytearray)):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise SpecError(f"spec: not valid JSON ({exc})") from exc
    if not isinstance(data, Mapping):
        raise SpecError(f"spec: must be a JSON object, not {_type_name(data)}")
    return data


def _check_keys(raw: Mapping[str, Any], *, api: bool) -> None:
    allowed = set(_CHECKS) | set(_LOCAL_PATH_FIELDS)
    unknown = sorted(str(key) for key in raw if key not in allowed)
    if unknown:
        raise SpecError(f"{', '.join(unknown)}: unknown key(s); allowed keys are {', '.join(sorted(allowed))}")
    if api:
        for key in _LOCAL_PATH_FIELDS:
            if key in raw:
                raise SpecError(
                    f"{key}: not allowed in the API spec; upload the archive as the multipart field {key!r}"
                )


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise SpecError(f"{key}: must be a string, not {_type_name(value)}")
    if not value.strip():
        raise SpecError(f"{key}: must not be empty")
    if len(value) > _MAX_TEXT:
        raise SpecError(f"{key}: must be at most {_MAX_TEXT} characters")
    if reason := unstorable(value):
        raise SpecError(f"{key}: {reason}")
    return value


def _name(key: str, value: Any) -> str:
    text = _text(key, value)
    if not _NAME.fullmatch(text):
        raise SpecError(
            f"{key}: {text!r} is not a slug (letters, digits, '-', '_', '.', "
            "starting with a letter or digit, at most 100 characters)"
        )
    return text


def _command(key: str, value: Any) -> str:
    text = _text(key, value)
    found = [token for token in _SHELL_SYNTAX if token in text]
    if found:
        raise SpecError(f"{key}: shell syntax {found[0]!r} is not allowed; commands run without a shell")
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise SpecError(f"{key}: cannot be split into arguments ({exc})") from exc
    if not argv or not argv[0].strip():
        raise SpecError(f"{key}: must not be empty")
    return text


def _pytest_command(key: str, value: Any) -> str:
    text = _command(key, value)
    argv = shlex.split(text)
    if not any(tuple(argv[: len(prefix)]) == prefix for prefix in PYTEST_PREFIXES):
        raise SpecError(f"{key}: must be a pytest invocation ('pytest ...' or 'python -m pytest ...'), got {text!r}")
    return text


def _relative_path(key: str, value: Any) -> str:
    text = _text(key, value)
    if any(ord(char) < 0x20 for char in text) or "\\" in text:
        raise SpecError(f"{key}: {text!r} contains a control character or a backslash")
    path = PurePosixPath(text)
    if path.is_absolute():
        raise SpecError(f"{key}: {text!r} must be relative to the repository")
    if ".." in path.parts:
        raise SpecError(f"{key}: {text!r} must not contain '..'")
    return text


def _string_list(key: str, value: Any, check: Callable[[str, Any], str]) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise SpecError(f"{key}: must be a list of strings, not {_type_name(value)}")
    if len(value) > _MAX_LIST:
        raise SpecError(f"{key}: at most {_MAX_LIST} entries")
    return tuple(check(f"{key}[{index}]", item) for index, item in enumerate(value))


def _requirement(key: str, value: Any) -> str:
    text = _text(key, value).strip()
    if text.startswith("-"):
        raise SpecError(f"{key}: pip options such as {text.split()[0]!r} are not allowed")
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        raise SpecError(f"{key}: {text!r} is not a PEP 508 requirement ({str(exc).splitlines()[0]})") from exc
    if requirement.url:
        raise SpecError(f"{key}: {text!r} points to a URL or path; only index packages are allowed")
    return text


def _requirements(key: str, value: Any) -> tuple[str, ...]:
    return _string_list(key, value, _requirement)


def _protected_paths(key: str, value: Any) -> tuple[str, ...]:
    return _string_list(key, value, _relative_path)


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{key}: must be true or false, not {_type_name(value)}")
    return value


def _int_range(low: int, high: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{key}: must be an integer, not {_type_name(value)}")
        if not low <= value <= high:
            raise SpecError(f"{key}: must be between {low} and {high}, got {value}")
        return value

    return check


def _local_path(key: str, value: Any, base: Path) -> Path:
    value = _text(key, value)
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.exists():
        raise SpecError(f"{key}: {value!r} does not exist (looked for {path})")
    return path.resolve()


def _entry_point(key: str, value: Any) -> str:
    text = _text(key, value).strip()
    if not _ENTRY_POINT.fullmatch(text):
        raise SpecError(f"{key}: {text!r} is not of the form 'package.module:function'")
    return text


def _entry_points(key: str, value: Any) -> tuple[str, ...]:
    return _string_list(key, value, _entry_point)


def _inputs(value: Any, *, spec_dir: Path | None, api: bool) -> tuple[str, ...]:
    """The author's discriminator cases: a JSONL file (CLI) or a list (both), each normalised by `_input`."""
    if isinstance(value, str):
        if api:
            raise SpecError("inputs: in the API spec, give the cases inline as a list, not a path")
        path = _local_path("inputs", value, Path(spec_dir) if spec_dir is not None else Path.cwd())
        if not path.is_file() or path.stat().st_size > _MAX_INPUTS_BYTES:
            raise SpecError(f"inputs: {value!r} must be a JSONL file of at most {_MAX_INPUTS_BYTES} bytes")
        items = []
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except (ValueError, RecursionError) as exc:
                    raise SpecError(f"inputs: line {number} of {value!r} is not JSON ({exc})") from exc
        value = items
    if not isinstance(value, list):
        raise SpecError(f"inputs: must be a list of cases or a JSONL file, not {_type_name(value)}")
    if len(value) > _MAX_INPUTS:
        raise SpecError(f"inputs: at most {_MAX_INPUTS} cases")
    cases = tuple(_input(f"inputs[{index}]", item) for index, item in enumerate(value))
    if sum(len(item) for item in cases) > _MAX_INPUTS_BYTES:
        raise SpecError(f"inputs: at most {_MAX_INPUTS_BYTES} bytes of cases")
    return cases


def _input(key: str, value: Any) -> str:
    """One case: a list of arguments, or {"entry_point": "pkg.mod:f", "args": [...], "kwargs": {...}}."""
    if isinstance(value, list):
        value = {"args": value}
    if not isinstance(value, dict):
        raise SpecError(f"{key}: must be a list of arguments or an object with 'args', not {_type_name(value)}")
    unknown = sorted(set(value) - {"entry_point", "args", "kwargs"})
    if unknown:
        raise SpecError(f"{key}: unknown key(s) {', '.join(unknown)}; allowed: entry_point, args, kwargs")
    entry = value.get("entry_point")
    if entry is not None:
        entry = _entry_point(f"{key}.entry_point", entry)
    args, kwargs = value.get("args", []), value.get("kwargs", {})
    if not isinstance(args, list):
        raise SpecError(f"{key}.args: must be a list, not {_type_name(args)}")
    if not isinstance(kwargs, dict):
        raise SpecError(f"{key}.kwargs: must be an object, not {_type_name(kwargs)}")
    text = json.dumps({"entry_point": entry, "args": args, "kwargs": kwargs}, sort_keys=True, separators=(",", ":"))
    if reason := unstorable(text):
        raise SpecError(f"{key}: {reason}")
    return text


def _check_lint_config_exists(values: Mapping[str, Any]) -> None:
    """In a CLI spec whose repo is a folder, the lint config must be a file in it."""
    lint_config, repo = values.get("lint_config"), values["repo"]
    if lint_config and repo.is_dir() and not (repo / lint_config).is_file():
        raise SpecError(f"lint_config: {lint_config!r} is not a file in the repository {repo}")


def _type_name(value: Any) -> str:
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    names[type(None)] = "null"
    return names.get(type(value), type(value).__name__)


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "name": _name,
    "test_command": _pytest_command,
    "hidden_test_command": _pytest_command,
    "benchmark_command": _command,
    "requirements": _requirements,
    "protected_paths": _protected_paths,
    "lint_config": _relative_path,
    "labels_per_item": _int_range(1, 5),
    "timeout_s": _int_range(1, 3600),
    "entry_points": _entry_points,
    "inputs": lambda key, value: value,  # read by _inputs, which needs the spec's folder
    "shared": _boolean,
}
_REQUIRED = ("name", "test_command")
