"""What an API client sees of a Result: nothing of the hidden tests, even when the patch tries to leak them."""

from __future__ import annotations

import json
from pathlib import Path

from scoring.selectors import hide_hidden_tests
from tests.scoring.core.fixtures import gcd_task

#: Fails every test, visible ones included, with the constants of every test module it can find in memory: in a
#: combined run the hidden test modules are there, so the visible tests' failure messages quote hidden values.
LEAK_THROUGH_VISIBLE_OUTPUT = """
import sys as _s


def gcd(a, b):
    found = []
    for name, module in list(_s.modules.items()):
        for value in list(vars(module).values()) if name.split(".")[-1].startswith("test_") else []:
            code = getattr(value, "__code__", None)
            if code is not None:
                found += [str(c) for c in code.co_consts if isinstance(c, int) and c > 100]
    raise AssertionError("LEAK " + " ".join(found))
"""

#: Does the same through the text of a visible test's failure, by name only.
LEAK_HIDDEN_NAMES = """
import sys as _s


def gcd(a, b):
    names = [n for m in list(_s.modules.values()) for n in dir(m) if n.startswith("test_gcd_")]
    raise AssertionError("NAMES " + " ".join(names))
"""


def _client_and_reviewer_views(tmp_path: Path, code: str) -> tuple[str, str]:
    task = gcd_task.task(tmp_path)
    diff = gcd_task.make_diff({"gcd/__init__.py": gcd_task.BUGGY + code})
    result = gcd_task.evaluate(task, diff)
    subscores = {"correctness": result.to_json()}
    return json.dumps(hide_hidden_tests(subscores)), json.dumps(subscores)


def test_hidden_values_copied_into_a_visible_failure_never_reach_the_client(tmp_path: Path) -> None:
    client, reviewer = _client_and_reviewer_views(tmp_path, LEAK_THROUGH_VISIBLE_OUTPUT)
    assert "1071" in reviewer  # the leak is real: the visible test's output quotes a hidden value...
    assert "1071" not in client  # ...and the client never sees it
    assert "withheld" in client


def test_hidden_test_names_copied_into_a_visible_failure_never_reach_the_client(tmp_path: Path) -> None:
    client, reviewer = _client_and_reviewer_views(tmp_path, LEAK_HIDDEN_NAMES)
    assert "test_gcd_large" in reviewer
    assert "test_gcd_large" not in client
    assert "test_gcd_negative" not in client
