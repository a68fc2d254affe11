"""`python -m benchmarks` on the command line: help, and a clear exit 2 for what it cannot run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_help_says_what_it_does_and_runs_nothing():
    done = bench("--help")
    assert done.returncode == 0
    assert "usage: python -m benchmarks" in done.stdout and "--only WORD" in done.stdout
    assert "[bench" not in done.stdout + done.stderr  # no benchmark started


def test_an_unknown_option_is_exit_2_with_a_message():
    done = bench("--fast")
    assert done.returncode == 2
    assert "unrecognized arguments: --fast" in done.stderr and "Traceback" not in done.stderr


def test_only_a_word_no_title_contains_is_exit_2_naming_the_titles():
    done = bench("--only", "nonesuch")
    assert done.returncode == 2
    assert "no benchmark title contains nonesuch: Throughput on rollout groups;" in done.stderr
    assert "Traceback" not in done.stderr
