"""Correctness: the sealed test runner, its pytest plugin, the static check, and the grading critic."""
