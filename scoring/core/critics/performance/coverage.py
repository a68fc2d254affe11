"""Can a patch change what the task's benchmark does? Read from one traced run of the base benchmark.

`record` (the JSON tracer.py writes) says which functions of the tree the base benchmark started, which
modules it imported, what it read itself, and every module name the import system looked for. `untouched` says
whether a patch's files can make any of that run differently; only then may the performance critic give the
patch the base's performance without running it. It answers no whenever it cannot show it:

- an imported module must be the same program once the bodies of the functions the base never started are set
  aside: the same imports, module and class statements, decorators, defaults and signatures, and the same body
  for every function that ran (a new module-level line, an import included, is code that runs); docstrings are
  set aside too (text the code does not run; a base that reads them as code, like PLY's grammar rules, is the
  exception docs/performance.md names);
- any other changed, added or deleted file must be invisible to the run: not read, listed or looked at by the
  benchmark, no part of its path named like a module the import system looked for (a new `json.py` or
  `intervals/fast.py` shadows or joins an import), and no module of the tree read as data (inspect, linecache);
- the record must be complete: no subprocess, fork or native code from the tree, no other tracer.
Functions are matched by qualified name; two definitions sharing one are both kept when either ran.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: Modules Python looks for when it starts, before any tracer can see it.
START_UP_MODULES = frozenset({"sitecustomize", "usercustomize"})
#: Larger sources are not parsed: the patch is measured instead.
MAX_SOURCE_BYTES = 2 << 20


def untouched(record: Mapping[str, Any], base_dir: Path, patched_dir: Path, paths: Iterable[str]) -> tuple[bool, str]:
    """(True, why) when no file in `paths` (relative, changed or deleted by the patch) can change the run."""
    if record.get("incomplete"):
        return False, f"the base run's trace is incomplete ({', '.join(record['incomplete'])})"
    modules = set(record.get("modules", ()))
    read = set(record.get("read", ()))
    functions = record.get("functions", {})
    searched = {part for name in record.get("searched", ()) for part in name.split(".")} | START_UP_MODULES
    paths = sorted(set(paths))
    for path in paths:
        if path in modules:
            if path in read:
                return False, f"{path} is a module the benchmark also reads as data"
            if not _same_program(base_dir / path, patched_dir / path, set(functions.get(path, ()))):
                return False, f"{path} changes code the benchmark runs"
            continue
        parts = Path(path).parts
        seen = next((p for p in (Path(*parts[:i]).as_posix() for i in range(len(parts), 0, -1)) if p in read), None)
        if seen is not None:
            return False, f"{path} lies in {seen}, which the benchmark reads"
        named = next((part for part in parts if part.split(".")[0] in searched), None)
        if named is not None:
            return False, f"{path} is named like a module the benchmark imports ({named.split('.')[0]})"
    ran = sum(len(names) for names in functions.values())
    return True, (
        f"none of the {len(paths)} file(s) the patch changes is code the base benchmark ran ({ran} functions and "
        f"module bodies in {len(modules)} module(s) of the tree), read, or named like a module it imports"
    )


def _same_program(base: Path, patched: Path, started: set[str]) -> bool:
    """True when both files parse to the same program once the bodies of functions not in `started` are dropped."""
    dumps = [_program(path, started) for path in (base, patched)]
    return dumps[0] is not None and dumps[0] == dumps[1]


def _program(path: Path, started: set[str]) -> str | None:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_SOURCE_BYTES:
            return None
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None
    _strip(tree, (), started)
    return ast.dump(tree, include_attributes=False)


def _qualname(scope: Sequence[str], name: str) -> str:
    return ".".join((*scope, name))


def _children_scope(node: ast.AST, scope: tuple[str, ...]) -> tuple[str, ...]:
    """The qualified-name prefix of what `node` defines, as co_qualname writes it."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return (*scope, node.name, "<locals>")
    if isinstance(node, ast.ClassDef):
        return (*scope, node.name)
    return scope


def _strip(node: ast.AST, scope: tuple[str, ...], started: set[str]) -> None:
    """Replace the body of every function whose qualified name never started by `pass` (decorators, defaults stay),
    and drop every docstring.

    Two definitions sharing a name both keep their bodies when that name started: either may be the one that ran.
    """
    _drop_docstring(node)
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and _qualname(scope, child.name) not in started:
            child.body = [ast.Pass()]
            continue
        _strip(child, _children_scope(child, scope), started)


def _drop_docstring(node: ast.AST) -> None:
    """Remove the docstring of a module, class or function (`pass` where it was the whole body)."""
    if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) or not node.body:
        return
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        node.body = node.body[1:] or [ast.Pass()]
