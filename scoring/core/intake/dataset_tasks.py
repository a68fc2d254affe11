"""Turn a dataset row of the MBPP shape (problem text, solution code, assert-style tests) into a task's files.

Pure: no Django, no I/O beyond the folders `write` is given. The importer (scoring.task_import) maps each row's
columns with a ColumnMap, builds a TaskDraft here, writes it and registers it like any task.

A draft is:
- repo/solution.py: a stub per function the tests call, with the reference's signature, the problem text as
  its docstring and `raise NotImplementedError` as its body (so every test fails on the base: all are F2P);
- repo/PROBLEM.md: the problem text, for the prompt;
- repo/tests/test_visible.py: one test function per visible assert;
- hidden/test_hidden.py: the held-out asserts (the last `holdout` of the row's tests, plus any challenge
  tests), when the row has enough tests to spare one;
- reference/solution.py: the row's solution, never part of the tree a patch sees.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODULE = "solution"
NAME_RE = re.compile(r"[^a-z0-9_-]+")


class RowRefused(ValueError):
    """The row cannot become a task; the message says why (it is counted in the import summary)."""


@dataclass(frozen=True)
class ColumnMap:
    """Which dataset column holds each part of a task. The defaults read MBPP (full and sanitized).

    Each entry lists candidate column names, the first present wins.
    """

    name: tuple[str, ...] = ("task_id", "name", "id")
    prompt: tuple[str, ...] = ("text", "prompt", "problem")
    solution: tuple[str, ...] = ("code", "solution", "canonical_solution")
    tests: tuple[str, ...] = ("test_list", "tests")
    challenge_tests: tuple[str, ...] = ("challenge_test_list",)
    setup: tuple[str, ...] = ("test_setup_code",)
    imports: tuple[str, ...] = ("test_imports",)

    @classmethod
    def parse(cls, text: str | None) -> ColumnMap:
        """`part=column[,part=column...]` (e.g. `prompt=question,tests=asserts`); ValueError on unknown parts."""
        if not text:
            return cls()
        changes: dict[str, tuple[str, ...]] = {}
        known = {f for f in cls.__dataclass_fields__}
        for item in text.split(","):
            part, sep, column = item.partition("=")
            part, column = part.strip(), column.strip()
            if not sep or part not in known or not column:
                raise ValueError(
                    f"column map item {item!r}: use part=column with part one of {', '.join(sorted(known))}"
                )
            changes[part] = (column,)
        return cls(**{**{f: getattr(cls(), f) for f in known}, **changes})


MBPP = ColumnMap()  # the default mapping


@dataclass(frozen=True)
class TaskDraft:
    name: str
    problem: str
    stub: str
    visible_tests: tuple[str, ...]
    hidden_tests: tuple[str, ...]
    reference: str
    preamble: str = ""  # setup code and imports the tests need
    functions: tuple[str, ...] = field(default=())

    def spec(self) -> dict[str, Any]:
        """The CLI task spec (paths relative to the folder `write` fills)."""
        data: dict[str, Any] = {
            "name": self.name,
            "repo": "repo",
            "test_command": "python -m pytest -q tests",
            "timeout_s": 30,
        }
        if self.hidden_tests:
            data["hidden_tests"] = "hidden"
        return data

    def write(self, folder: Path) -> Path:
        """Write repo/, hidden/ (if any) and reference/ under `folder`; return `folder`."""
        repo = folder / "repo"
        (repo / "tests").mkdir(parents=True, exist_ok=True)
        (repo / f"{MODULE}.py").write_text(self.stub)
        (repo / "PROBLEM.md").write_text(self.problem.rstrip() + "\n")
        (repo / "tests" / "test_visible.py").write_text(_test_module(self.visible_tests, self.preamble, "visible"))
        if self.hidden_tests:
            (folder / "hidden").mkdir(exist_ok=True)
            (folder / "hidden" / "test_hidden.py").write_text(_test_module(self.hidden_tests, self.preamble, "hidden"))
        (folder / "reference").mkdir(exist_ok=True)
        (folder / "reference" / f"{MODULE}.py").write_text(self.reference.rstrip() + "\n")
        return folder


def _pick(row: Mapping[str, Any], candidates: Sequence[str]) -> Any:
    for column in candidates:
        if column in row and row[column] is not None:
            return row[column]
    return None


def _asserts(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [line for line in value.splitlines() if line.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise RowRefused(f"{what} must be a list of assert statements")
    out = []
    for item in value:
        text = item.strip()
        try:
            tree = ast.parse(text)
        except SyntaxError as exc:
            raise RowRefused(f"{what}: not Python: {text[:60]!r} ({exc.msg})") from exc
        if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
            raise RowRefused(f"{what}: not a single assert statement: {text[:60]!r}")
        out.append(text)
    return out


def _called_names(tests: Sequence[str]) -> set[str]:
    names: set[str] = set()
    for text in tests:
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                names.add(node.func.id)
    return names


def _stub(solution: str, called: set[str], problem: str) -> tuple[str, tuple[str, ...]]:
    """The base module: the reference's functions the tests call, bodies replaced by NotImplementedError."""
    try:
        tree = ast.parse(solution)
    except SyntaxError as exc:
        raise RowRefused(f"solution is not Python ({exc.msg}, line {exc.lineno})") from exc
    defined = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    wanted = sorted(name for name in called if name in defined)
    if not wanted:
        raise RowRefused("the tests call no function the solution defines")
    docstring = problem.strip().replace('"""', "'''").replace("\\", "\\\\")
    parts = ['"""' + docstring + '"""\n']
    for name in wanted:
        node = defined[name]
        node.body = [ast.Raise(exc=ast.Name(id="NotImplementedError", ctx=ast.Load()), cause=None)]
        node.decorator_list = []
        parts.append(ast.unparse(ast.fix_missing_locations(node)) + "\n")
    return "\n\n".join(parts), tuple(wanted)


def _test_module(asserts: Sequence[str], preamble: str, kind: str) -> str:
    lines = [
        f'"""{kind.capitalize()} tests, one per assert of the dataset row."""',
        "",
        f"from {MODULE} import *  # noqa: F403",
    ]
    if preamble.strip():
        lines += ["", preamble.rstrip()]
    for index, text in enumerate(asserts, start=1):
        lines += ["", "", f"def test_{kind}_{index}():", f"    {text}"]
    return "\n".join(lines) + "\n"


def task_name(prefix: str, value: Any) -> str:
    """A task name from the row's id: lower case, letters, digits, '-' and '_' only."""
    name = NAME_RE.sub("-", f"{prefix}{value}".strip().lower()).strip("-")
    if not name:
        raise RowRefused("the name column is empty")
    return name[:100]


def draft_from_row(
    row: Mapping[str, Any], *, columns: ColumnMap = MBPP, prefix: str = "", holdout: int = 1, index: int = 0
) -> TaskDraft:
    """A TaskDraft from one row; RowRefused saying why the row cannot be a task.

    The last `holdout` asserts are held out as hidden tests when at least one visible assert remains; the row's
    challenge tests (MBPP's `challenge_test_list`) are always hidden.
    """
    if not isinstance(row, Mapping):
        raise RowRefused("the row is not an object")
    raw_name = _pick(row, columns.name)
    name = task_name(prefix, raw_name if raw_name is not None else index)
    problem = _pick(row, columns.prompt)
    solution = _pick(row, columns.solution)
    if not isinstance(problem, str) or not problem.strip():
        raise RowRefused(f"no problem text (columns {', '.join(columns.prompt)})")
    if not isinstance(solution, str) or not solution.strip():
        raise RowRefused(f"no solution code (columns {', '.join(columns.solution)})")
    tests = _asserts(_pick(row, columns.tests), "tests")
    if not tests:
        raise RowRefused(f"no tests (columns {', '.join(columns.tests)})")
    challenge = _asserts(_pick(row, columns.challenge_tests), "challenge tests")
    setup = _pick(row, columns.setup) or ""
    imports = _pick(row, columns.imports) or []
    if isinstance(imports, str):
        imports = [imports]
    preamble = "\n".join([*(str(i) for i in imports), str(setup)]).strip()
    keep = max(1, len(tests) - max(0, holdout))
    visible, hidden = tests[:keep], tests[keep:] + challenge
    stub, functions = _stub(solution, _called_names(tests + challenge), problem)
    return TaskDraft(
        name=name,
        problem=problem,
        stub=stub,
        visible_tests=tuple(visible),
        hidden_tests=tuple(hidden),
        reference=solution,
        preamble=preamble,
        functions=functions,
    )
