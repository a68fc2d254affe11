"""The review queue reads narrow columns only: `Evaluation.doubt` (written wherever an Evaluation is) and the
`evaluation_queue` index, which serves the queue's order, every filter and every count.

SQLite keeps each row's bulky JSON (subscores with their evidence, meta) inline, before the small columns, so a
query that touches the table reads every waiting row's evidence: that is what made the queue slow with 10,000
patches (docs/benchmarks.md). PostgreSQL stores large values out of line.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from labeling.queue import QueueFilters, queue_counts, queue_items
from scoring.models import Evaluation
from scoring.services import confidence_fields
from tests.labeling.factories import queued_patch, subscore

pytestmark = pytest.mark.django_db

QUEUE_INDEX = ["pipeline_version", "min_confidence", "patch_id", "route", "flags", "doubt"]


def stored(**confidences: float) -> dict:
    return {name: subscore(name, 0.5, confidence) for name, confidence in confidences.items()}


def test_doubt_lists_the_measured_criteria_below_the_healing_threshold(settings):
    subscores = stored(correctness=0.95, style=0.4, security=0.69)
    subscores["performance"] = subscore("performance", None, 0.1)  # not measured: nothing to doubt

    assert confidence_fields(subscores) == {"min_confidence": 0.4, "doubt": ["style", "security"]}
    settings.REVIEWAPP = {**settings.REVIEWAPP, "HEAL_CONFIDENCE": 0.5}
    assert confidence_fields(subscores)["doubt"] == ["style"]


def test_the_doubt_filter_reads_the_stored_column():
    doubtful = queued_patch(subscores={"security": subscore("security", 0.5, 0.3)})
    sure = queued_patch()
    Evaluation.objects.filter(patch=sure).update(doubt=["security"])  # only the column says so

    listed = {e.patch_id for e in queue_items(QueueFilters(doubt="security"), now=timezone.now())}

    assert listed == {doubtful.pk, sure.pk}


def test_the_queue_index_holds_every_column_the_queue_reads():
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Evaluation._meta.db_table)
    assert constraints["evaluation_queue"]["columns"] == QUEUE_INDEX


def sqlite_plan(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        return "\n".join(str(row[-1]) for row in cursor.fetchall())


@pytest.mark.parametrize(
    ("filters", "listed"),
    [
        (QueueFilters(), 3),
        (QueueFilters(flag="tamper"), 3),
        (QueueFilters(doubt="style"), 2),
        (QueueFilters(route="audit"), 0),
    ],
    ids=["all", "flag", "doubt", "route"],
)
def test_the_queue_is_listed_counted_and_filtered_through_its_index(filters, listed, make_user):
    """The plans are held on SQLite, where the wide rows are the cost (CI runs this suite on SQLite too).
    PostgreSQL stores large JSON out of line (TOAST), so reading a row is cheap there and its planner, going by
    the table's statistics, may rightly prefer the patch status index: there the results are checked."""
    reviewer, _ = make_user("rita", "reviewer")
    for confidence in (0.3, 0.6, 0.9):
        queued_patch(confidence=confidence, flags=["tamper"])
    now = timezone.now()

    with CaptureQueriesContext(connection) as captured:
        items = queue_items(filters, now=now)
        assert len(items[:50]) == items.count() == listed
        queue_counts(reviewer=reviewer, now=now)

    reads = [q["sql"] for q in captured.captured_queries if Evaluation._meta.db_table in q["sql"]]
    assert len(reads) == 3
    if connection.vendor == "sqlite":
        for sql in reads:
            shown = sqlite_plan(sql)
            assert "evaluation_queue" in shown, f"{sql}\n{shown}"
            assert "TEMP B-TREE FOR ORDER BY" not in shown, shown
            if sql.startswith("SELECT COUNT"):
                assert "COVERING INDEX evaluation_queue" in shown, shown


def test_queue_filters_keep_known_values_and_drop_unknown_or_overlong_ones():
    from django.http import QueryDict

    query = QueryDict("task=gcd&flag=tamper&route=bogus&doubt=style")
    assert QueueFilters.from_query(query) == QueueFilters(task="gcd", flag="tamper", doubt="style")
    overlong = QueryDict(f"task={'t' * 101}&flag=not-a-flag&route=audit&doubt=taste")
    assert QueueFilters.from_query(overlong) == QueueFilters(route="audit")
