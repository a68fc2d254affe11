"""Diff-aware matching of findings: only what the patch introduces counts, wherever the lines moved."""

from __future__ import annotations

from scoring.core.analysis.findings import Finding, diff_findings, normalise_context


def unused(line: int, scope: str = "run", context: str = "x = 1") -> Finding:
    return Finding(
        tool="pylint",
        id="W0612",
        name="unused-variable",
        severity="warning",
        line=line,
        column=4,
        message="Unused variable 'x'",
        scope=scope,
        context=context,
    )


def syntax_error(line: int) -> Finding:
    return Finding(
        tool="pylint",
        id="E0001",
        name="syntax-error",
        severity="error",
        line=line,
        column=0,
        message="Parsing failed",
        context=f"line {line}",
    )


def test_finding_shifted_down_by_an_insertion_above_is_not_new() -> None:
    diff = diff_findings([unused(10)], [unused(14)], added_lines={1, 2, 3, 4})
    assert diff.introduced == ()
    assert diff.fixed == ()


def test_function_moved_unchanged_brings_no_new_finding() -> None:
    # The moved function's lines are all "added" in the diff, yet its finding existed before the move.
    diff = diff_findings([unused(5)], [unused(40)], added_lines=set(range(38, 45)))
    assert diff.introduced == ()


def test_new_finding_on_an_added_line_is_introduced() -> None:
    new = unused(7, context="y = 2")
    diff = diff_findings([unused(3)], [unused(3), new], added_lines={7})
    assert diff.introduced == (new,)


def test_new_finding_on_an_untouched_line_is_not_the_patch_s() -> None:
    diff = diff_findings([], [unused(3)], added_lines={7})
    assert diff.introduced == ()


def test_fixed_finding_is_reported_as_fixed_never_as_introduced() -> None:
    diff = diff_findings([unused(3), unused(9, context="z = 3")], [unused(3)], added_lines={9})
    assert diff.introduced == ()
    assert [finding.context for finding in diff.fixed] == ["z = 3"]


def test_a_copy_of_an_existing_problem_counts_once_as_a_multiset() -> None:
    # Same identity twice in the patched file, once in the base: the copy on the added line is the new one.
    diff = diff_findings([unused(3)], [unused(3), unused(20)], added_lines={20})
    assert [finding.line for finding in diff.introduced] == [20]


def test_same_line_in_another_function_is_a_different_finding() -> None:
    diff = diff_findings([unused(3, scope="run")], [unused(3, scope="other")], added_lines={3})
    assert [finding.scope for finding in diff.introduced] == ["other"]


def test_syntax_error_counts_even_when_reported_below_the_edit() -> None:
    diff = diff_findings([], [syntax_error(12)], added_lines={11})
    assert [finding.id for finding in diff.introduced] == ["E0001"]


def test_file_that_did_not_parse_before_is_not_newly_broken() -> None:
    diff = diff_findings([syntax_error(3)], [syntax_error(30)], added_lines={30})
    assert diff.introduced == ()


def test_context_ignores_indentation_and_inner_spacing() -> None:
    assert normalise_context("        x  =   1\t") == "x = 1"


def test_finding_round_trips_through_json() -> None:
    finding = unused(3)
    assert Finding.from_json(finding.to_json()) == finding
