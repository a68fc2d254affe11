"""The warm analyser against the `pylint` and `bandit` command-line tools, per changed file, on a real package.

`run(n_files)` downloads a pure-Python wheel from PyPI (attrs, several modules), then for each of its first
`n_files` modules measures one warm `Analyser.analyse` call against one `pylint` plus one `bandit` invocation with
the same configuration, asserts the findings are identical, and returns the medians and their ratio (goal >= 5).
`python -m benchmarks.analyser_bench [N]` prints the result as JSON.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from benchmarks.common import pip_download
from scoring.core.analysis.analyser import REVIEW_PYLINTRC, Analyser, FileReport
from scoring.core.analysis.analyser_worker import FORCED_ENABLE

PACKAGE = "attrs"
TOOL_TIMEOUT_S = 120
SUPPRESSED = re.compile(r"Suppressed '([\w-]+)' \(from line (\d+)\)")


def download(package: str, dest: Path) -> tuple[Path, str]:
    """Download and unpack the package's wheel from PyPI into `dest`; return the tree and the wheel's name."""
    wheel = pip_download(package, dest, sdist=False)
    tree = dest / "tree"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tree)
    return tree, wheel.name


def tool_env(home: str) -> dict[str, str]:
    """The environment both sides run with: no user configuration, no caches written."""
    return {**os.environ, "HOME": home, "PYLINTHOME": home, "PYTHONHASHSEED": "0"}


def timed(argv: list[str], home: str) -> tuple[float, str]:
    """Run one command-line tool from an empty folder; return its wall time and its standard output."""
    started = time.perf_counter()
    done = subprocess.run(
        argv, capture_output=True, text=True, cwd=home, env=tool_env(home), timeout=TOOL_TIMEOUT_S, check=False
    )
    return time.perf_counter() - started, done.stdout


def cli_findings(tree: Path, path: str, home: str) -> tuple[float, float, set[tuple[Any, ...]]]:
    """Run the two command-line tools on one file; return their wall times and their findings."""
    binaries = Path(sys.executable).parent
    pylint_s, pylint_out = timed(
        [
            str(binaries / "pylint"),
            str(tree / path),
            f"--rcfile={REVIEW_PYLINTRC}",
            f"--enable={FORCED_ENABLE}",
            "--persistent=n",
            "--score=n",
            "--reports=n",
            "--output-format=json",
        ],
        home,
    )
    bandit_argv = [str(binaries / "bandit"), "-f", "json", "-q", "--ignore-nosec", str(tree / path)]
    bandit_s, bandit_out = timed(bandit_argv, home)
    found: set[tuple[Any, ...]] = set()
    for message in json.loads(pylint_out or "[]"):
        symbol, line, column = message["symbol"], message["line"], message["column"]
        if symbol == "suppressed-message":
            # The analyser reports the message a pragma hid; the CLI reports the pragma. Compare what was hidden.
            match = SUPPRESSED.match(message["message"])
            symbol, line, column = match.group(1), int(match.group(2)), None  # type: ignore[union-attr]  # the pattern matched: its groups exist
        elif message["type"] == "info" and symbol != "file-ignored":
            continue
        found.add(("pylint", symbol, line, column))
    for issue in json.loads(bandit_out)["results"]:
        found.add(("bandit", issue["test_id"], issue["line_number"], issue["issue_severity"]))
    return pylint_s, bandit_s, found


def analyser_findings(report: FileReport) -> set[tuple[Any, ...]]:
    """The analyser's findings in the same shape as cli_findings'."""
    found = {("pylint", f.name, f.line, None if f.suppressed else f.column) for f in report.pylint}
    return found | {("bandit", f.id, f.line, f.severity) for f in report.bandit}


def run(n_files: int = 8, source: str | None = None) -> dict[str, Any]:
    """Measure per-file analysis time, warm analyser vs command-line tools, on `n_files` modules of PACKAGE.

    `source`: an unpacked package folder to measure instead of downloading PACKAGE.
    """
    with tempfile.TemporaryDirectory(prefix="analyser-bench-") as scratch:
        tree, wheel = (Path(source), Path(source).name) if source else download(PACKAGE, Path(scratch))
        home = tempfile.mkdtemp(dir=scratch)
        modules = sorted(str(path.relative_to(tree)) for path in tree.rglob("*.py"))
        files = [path for path in modules if not path.endswith("__init__.py")][:n_files]
        warm_s, cli_s, pylint_s, bandit_s = [], [], [], []
        with Analyser(timeout_s=TOOL_TIMEOUT_S) as analyser:
            analyser.analyse(tree, [modules[0]], pylintrc=REVIEW_PYLINTRC)  # the start-up is paid once per worker
            for path in files:
                started = time.perf_counter()
                report = analyser.analyse(tree, [path], pylintrc=REVIEW_PYLINTRC).files[path]
                warm_s.append(time.perf_counter() - started)
                one_pylint, one_bandit, expected = cli_findings(tree, path, home)
                pylint_s.append(one_pylint)
                bandit_s.append(one_bandit)
                cli_s.append(one_pylint + one_bandit)
                got = analyser_findings(report)
                if report.error or got != expected:
                    raise AssertionError(
                        f"{path}: findings differ; analyser only {sorted(got - expected, key=str)}, "
                        f"CLI only {sorted(expected - got, key=str)} {report.error or ''}"
                    )
    warm, cli = statistics.median(warm_s), statistics.median(cli_s)
    return {
        "package": wheel,
        "files": len(files),
        "analyser_median_s": round(warm, 4),
        "cli_median_s": round(cli, 4),
        "pylint_cli_median_s": round(statistics.median(pylint_s), 4),
        "bandit_cli_median_s": round(statistics.median(bandit_s), 4),
        "ratio": round(cli / warm, 2),
        "goal_ratio": 5.0,
        "identical_findings": True,
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 8), indent=2))
