"""What a patch may change without changing what the base benchmark runs (performance.coverage), from records."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoring.core.critics.performance.coverage import untouched

LIB = '''\
import re


def used(text):
    """Called by the benchmark."""
    return re.sub("a", "b", text)


class Box:
    def called(self):
        return 1

    def spare(self):
        return 2


def spare(items, limit=10):
    """Never called by the benchmark."""
    return sorted(items)[:limit]
'''
RECORD = {
    "functions": {"lib.py": ["<module>", "used", "Box", "Box.called"]},
    "modules": ["lib.py"],
    "read": ["data", "data/words.txt"],
    "searched": ["re", "lib", "json", "encodings.utf_8"],
    "incomplete": [],
}


def trees(tmp_path: Path, patched: dict[str, str | None]) -> tuple[Path, Path]:
    base, after = tmp_path / "base", tmp_path / "patched"
    tmp_path.mkdir(exist_ok=True)
    for root, files in ((base, {"lib.py": LIB}), (after, {"lib.py": LIB, **patched})):
        root.mkdir()
        for name, text in files.items():
            if text is not None:
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_text(text)
    return base, after


def check(tmp_path: Path, patched: dict[str, str | None], record: dict = RECORD) -> tuple[bool, str]:
    base, after = trees(tmp_path, patched)
    return untouched(record, base, after, patched)


@pytest.mark.parametrize(
    "patched",
    [
        {"lib.py": LIB.replace("sorted(items)[:limit]", "sorted(items, reverse=True)[:limit]")},
        {"lib.py": LIB.replace("        return 2", "        import os\n        return os.sep")},
        {"lib.py": LIB.replace('"""Never called by the benchmark."""', '"""Never called; documented better."""')},
        {"lib.py": LIB + "# a trailing comment\n"},
        {"notes/ROLLOUT.txt": "a file nothing reads\n"},
        {"tests/test_lib.py": "def test_it():\n    pass\n"},
        # Docstrings are text the code does not run, in the functions that ran as anywhere else.
        {"lib.py": LIB.replace('"""Called by the benchmark."""', '"""Called by the benchmark, on every line."""')},
        {"lib.py": LIB.replace('    """Called by the benchmark."""\n', "")},
        {"lib.py": LIB.replace("    def called(self):\n", '    def called(self):\n        """One."""\n')},
        {"lib.py": '"""The library."""\n' + LIB},
    ],
    ids=[
        "spare-body",
        "spare-method-body",
        "spare-docstring",
        "comment",
        "new-text-file",
        "new-test",
        "used-docstring",
        "used-docstring-removed",
        "called-method-docstring-added",
        "module-docstring",
    ],
)
def test_changes_the_benchmark_cannot_reach_are_untouched(tmp_path, patched):
    clear, why = check(tmp_path, patched)
    assert clear, why
    assert "none of the" in why


@pytest.mark.parametrize(
    ("patched", "reason"),
    [
        ({"lib.py": LIB.replace('"b", text', '"c", text')}, "changes code the benchmark runs"),
        ({"lib.py": LIB.replace("        return 1", "        return 3")}, "changes code the benchmark runs"),
        ({"lib.py": "import os\n" + LIB}, "changes code the benchmark runs"),
        ({"lib.py": LIB.replace("limit=10", "limit=sum(range(10**8))")}, "changes code the benchmark runs"),
        ({"lib.py": LIB.replace("def spare(items", "@print\ndef spare(items")}, "changes code the benchmark runs"),
        ({"lib.py": LIB + "\nspare([])\n"}, "changes code the benchmark runs"),
        # A string that is not the first statement is an expression the function evaluates.
        ({"lib.py": LIB.replace("    return re.sub", '    "x" * 10**8\n    return re.sub')}, "changes code"),
        ({"lib.py": None}, "changes code the benchmark runs"),
        ({"json.py": "x = 1\n"}, "named like a module the benchmark imports (json)"),
        ({"encodings/utf_8.py": "x = 1\n"}, "named like a module the benchmark imports (encodings)"),
        ({"sitecustomize.py": "x = 1\n"}, "named like a module"),
        ({"data/new.txt": "more\n"}, "lies in data, which the benchmark reads"),
        ({"data/words.txt": "other\n"}, "lies in data/words.txt, which the benchmark reads"),
    ],
    ids=[
        "used-body",
        "called-method",
        "module-import",
        "spare-default",
        "spare-decorator",
        "module-call",
        "string-statement-after-the-docstring",
        "deleted-module",
        "shadows-stdlib",
        "shadows-submodule",
        "start-up-hook",
        "file-in-a-listed-folder",
        "read-file",
    ],
)
def test_changes_the_benchmark_can_reach_are_not(tmp_path, patched, reason):
    clear, why = check(tmp_path, patched)
    assert not clear
    assert reason in why


def test_incomplete_trace_is_never_used(tmp_path):
    clear, why = check(tmp_path, {"notes.txt": "x\n"}, {**RECORD, "incomplete": ["subprocess.Popen"]})
    assert not clear and "incomplete (subprocess.Popen)" in why


def test_module_the_benchmark_also_reads_as_data_is_not_untouched(tmp_path):
    spare_only = {"lib.py": LIB.replace("sorted(items)", "sorted(set(items))")}
    assert check(tmp_path / "plain", spare_only)[0]
    clear, why = check(tmp_path / "read", spare_only, {**RECORD, "read": ["lib.py"]})
    assert not clear and "reads as data" in why
