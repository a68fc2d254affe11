"""The harness's pytest plugin: runs INSIDE the sandboxed test process, loaded with `-p` before any code of the tree.

This file is copied into each run's tree under a random name; it imports only the standard library and pytest.
The correctness critic (scoring/core/critics/correctness/critic.py) reads the verdict from what this plugin streams,
never from a report the process writes at its end. At import, before any code of the tree runs, it:

- reads its bootstrap (a JSON file the harness put in the report folder, named by REVIEWAPP_HARNESS) and deletes it,
  and deletes its own file: the nonce, the canary plan and the hidden tests' sources then live in memory only;
- opens the outcome stream, a named pipe the harness reads while the run goes on. Each test phase's outcome is
  written to it as it happens (one JSON line, stamped with the nonce and a sequence number), so nothing written
  later can take it back; after the session's last outcome it writes "done" and the process ends with `os._exit`,
  so no exit hook, finalizer or `__del__` of the tree's code runs after the verdict;
- serves the hidden tests from memory through an import hook: the files in the tree are empty stand-ins with
  random names, so code that lists and reads the whole filesystem finds none of their source or values;
- adds canaries: copies of real tests of the run (same module, a name built like theirs) that call the real test
  and then fail. Code that forces passes for "every test but the canary" cannot tell them from real ones.

What this cannot do: the tree's code runs in this same process and can, with enough effort, reach this plugin's
memory. docs/sandbox.md ("Threat model") says what is sealed and by which boundary.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import json
import os
import random
import sys
import types

import pytest

# This file runs inside the sandbox beside the task's tests, so it imports nothing for typing at run time: the
# constant is False there, and mypy reads the block as always taken (as it does `typing.TYPE_CHECKING`).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

_EXCERPT_CHARS = 600
_MAX_CANARIES = 8
_SUFFIXES = ("again", "extra", "more", "other", "edge", "case", "variant", "regression", "second", "alt")
_AssertionError = AssertionError
_exit = os._exit
_Function, _Module = pytest.Function, pytest.Module
_write = os.write
_dumps = json.dumps


def _bootstrap() -> dict[str, Any]:
    path = os.environ.get("REVIEWAPP_HARNESS", "")
    with open(path, encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    os.unlink(path)
    with contextlib.suppress(OSError):
        os.unlink(__file__)
    return data


_BOOT = _bootstrap()
_NONCE = _BOOT["nonce"]
_STREAM = os.open(os.path.join(os.path.dirname(os.environ["REVIEWAPP_HARNESS"]), "stream"), os.O_WRONLY)
_seq = 0
_canaries: set[str] = set()
_config: pytest.Config | None = None
_status = 1


def _emit(record: dict[str, object]) -> None:
    """Write one record to the stream; a closed stream (the harness gave up) ends the run."""
    global _seq
    _seq += 1
    data = (_dumps({**record, "nonce": _NONCE, "seq": _seq}) + "\n").encode("utf-8", "replace")
    try:
        while data:
            data = data[_write(_STREAM, data) :]
    except OSError:
        _exit(3)


class _HiddenTests(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the hidden modules (whose files in the tree are empty stand-ins) from memory, under their stand-in's
    name and, for a renamed test file, under its real name too (a hidden test may import another by name)."""

    def __init__(self, sources: dict[str, str], aliases: dict[str, str]) -> None:
        root = os.getcwd()
        self.sources = {os.path.join(root, rel): text for rel, text in sources.items()}
        self.aliases = {os.path.join(root, real): os.path.join(root, stub) for real, stub in aliases.items()}
        self.names = {_module_name(path) for path in [*self.sources, *self.aliases]}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.rpartition(".")[2] not in self.names:
            return None  # most imports: not a hidden module's name, no path search
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.origin in self.sources:
            return importlib.util.spec_from_file_location(
                fullname, spec.origin, loader=self, submodule_search_locations=spec.submodule_search_locations
            )
        leaf = fullname.rpartition(".")[2] + ".py"
        for folder in path if path is not None else sys.path:
            candidate = os.path.join(folder or os.getcwd(), leaf)
            if candidate in self.aliases:
                return importlib.util.spec_from_file_location(fullname, candidate, loader=self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        origin: str = module.__spec__.origin  # type: ignore[union-attr,assignment]  # find_spec gave it a file
        source = self.sources[self.aliases.get(origin, origin)]
        tree = ast.parse(source, filename=origin)
        name = os.path.basename(origin)
        if _config is not None and (name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"):
            from _pytest.assertion.rewrite import rewrite_asserts

            rewrite_asserts(tree, source.encode(), origin, _config)
        exec(compile(tree, origin, "exec", dont_inherit=True), module.__dict__)  # noqa: S102 - the task's tests


def _module_name(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.basename(folder) if name == "__init__.py" else name.removesuffix(".py")


_hidden = _HiddenTests(_BOOT.get("hidden", {}), _BOOT.get("aliases", {}))
sys.meta_path.insert(0, _hidden)


def _conftests_now() -> dict[str, bytes]:
    """Every conftest.py under the tree, with its content, before any code of the tree runs."""
    found: dict[str, bytes] = {}
    for root, dirs, files in os.walk(os.getcwd()):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if "conftest.py" in files:
            path = os.path.realpath(os.path.join(root, "conftest.py"))
            with open(path, "rb") as handle:
                found[path] = handle.read()
    return found


#: The conftest files of the tree as the run began: one written or rewritten during the run is code the tree's
#: code brought in, not the task's.
_CONFTESTS = _conftests_now()


def pytest_plugin_registered(plugin: object, manager: pytest.PytestPluginManager) -> None:
    path = getattr(plugin, "__file__", None)
    if not path or os.path.basename(path) != "conftest.py":
        return
    real = os.path.realpath(path)
    try:
        with open(real, "rb") as handle:
            now = handle.read()
    except OSError:
        now = None
    if real in _hidden.sources:
        return  # a hidden conftest, served from memory
    if _CONFTESTS.get(real) != now:
        _emit({"k": "tamper", "why": "conftest"})


def pytest_configure(config: pytest.Config) -> None:
    global _config
    _config = config
    if _hidden in sys.meta_path:
        sys.meta_path.remove(_hidden)
    sys.meta_path.insert(0, _hidden)


def _canary_factory(test: Callable[..., object]) -> Callable[..., None]:
    def canary(*args: object, **kwargs: object) -> None:
        test(*args, **kwargs)
        raise AssertionError("assert False")

    return canary


def _make_canary(test: Callable[..., object], name: str) -> types.FunctionType:
    """A function that runs `test`, then fails, and looks like one of the test module's own: its code object names it
    `name` at the original's file and line, its globals are the module's, and the module holds it under `name`."""
    made = _canary_factory(test)
    original = getattr(test, "__code__", None)
    code = made.__code__.replace(co_name=name, co_qualname=name)
    if original is not None:
        code = code.replace(co_filename=original.co_filename, co_firstlineno=original.co_firstlineno)
    globals_ = getattr(test, "__globals__", made.__globals__)
    function = types.FunctionType(code, globals_, name, None, made.__closure__)
    # pytest reads the fixtures it needs from the signature (FunctionType declares no such attribute).
    function.__signature__ = inspect.signature(test)  # type: ignore[attr-defined]  # pytest's own attribute
    function.__doc__ = getattr(test, "__doc__", None)
    if hasattr(test, "pytestmark"):
        function.pytestmark = list(test.pytestmark)  # type: ignore[attr-defined]  # pytest's marks, as on `test`
    if "__name__" in globals_ and globals_.get(name) is None:
        globals_[name] = function
    return function


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Insert the canaries among the items: perturbed copies of real module-level tests, beside their originals."""
    wanted = int(_BOOT.get("canaries", 0))
    rng = random.SystemRandom()
    plain = [
        item
        for item in items
        if type(item) is _Function
        and isinstance(item.parent, _Module)
        and not any(mark.name in ("skip", "skipif", "xfail") for mark in item.iter_markers())
    ]
    names = {item.nodeid for item in items}
    rng.shuffle(plain)
    # One in every test module first (up to _MAX_CANARIES), so forcing the tests of any one file trips one.
    firsts = list({item.parent.nodeid: item for item in plain}.values())  # type: ignore[union-attr]  # a Module
    chosen = firsts[:_MAX_CANARIES] + [item for item in plain if item not in firsts]
    for original in chosen[: max(wanted, min(len(firsts), _MAX_CANARIES))]:
        base = original.originalname
        for _ in range(20):
            new = f"{base}_{rng.choice(_SUFFIXES)}"
            name = new + original.name[len(base) :]
            if f"{original.parent.nodeid}::{name}" not in names:  # type: ignore[union-attr]  # a Module (see plain)
                break
        else:
            continue
        item = _Function.from_parent(
            original.parent,
            name=name,
            callspec=getattr(original, "callspec", None),
            callobj=_make_canary(original.obj, new),
            fixtureinfo=original._fixtureinfo,
            originalname=new,
        )
        names.add(item.nodeid)
        _canaries.add(item.nodeid)
        items.insert(items.index(original) + rng.randint(0, 1), item)
    _emit({"k": "canaries", "nodeids": sorted(_canaries)})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    text = report.longreprtext if report.failed or report.skipped else ""
    _emit(
        {
            "k": "test",
            "nodeid": report.nodeid,
            "when": report.when,
            "outcome": report.outcome,
            "text": text[:_EXCERPT_CHARS],
            # pytest's `subtests` and unittest's subTest report several calls for one test
            "sub": type(report).__name__ == "SubtestReport",
        }
    )


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _emit({"k": "collect_error", "nodeid": report.nodeid, "text": report.longreprtext[:_EXCERPT_CHARS]})


def pytest_internalerror(excrepr: object) -> None:
    _emit({"k": "internal_error", "text": str(excrepr)[:_EXCERPT_CHARS]})


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int | pytest.ExitCode) -> None:
    global _status
    _status = int(exitstatus)
    _emit({"k": "done", "exitstatus": int(exitstatus)})


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """The verdict is out: end here, before any exit hook, finalizer or `__del__` of the tree's code can run."""
    sys.stdout.flush()
    sys.stderr.flush()
    _exit(_status)
