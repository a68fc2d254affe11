"""Labels are append-only events; edits name what they replace; stale edits conflict; the queue empties."""

from __future__ import annotations

import pytest

from labeling import services
from labeling.models import LabelEvent
from scoring.core.aggregate.route import weighted_mean
from scoring.core.critics.registry import CRITERIA
from scoring.models import PatchStatus
from scoring.selectors import active_weights
from tests.labeling.factories import queued_patch

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer(make_user):
    return make_user("rita", "reviewer")[0]


def _label(patch, reviewer, value=0.5, **kwargs):
    return services.label_submit(patch=patch, reviewer=reviewer, scores={n: value for n in CRITERIA}, **kwargs)


def test_label_records_automatic_and_human_values_and_finishes_the_item(reviewer):
    patch = queued_patch(scores={CRITERIA[0]: 0.3})
    services.claim_patch(patch=patch, reviewer=reviewer)
    event = services.label_submit(
        patch=patch,
        reviewer=reviewer,
        scores={CRITERIA[0]: "0.8"},
        notes={CRITERIA[0]: "the hidden test is wrong"},
        comment="fine",
        time_spent_s=42,
    )
    assert event.subscores[CRITERIA[0]] == {"auto": 0.3, "human": 0.8, "note": "the hidden test is wrong"}
    assert event.time_spent_s == 42
    patch.refresh_from_db()
    assert patch.status == PatchStatus.REVIEWED


def test_final_score_is_the_weighted_mean_under_the_active_profile(reviewer):
    patch = queued_patch()
    services.claim_patch(patch=patch, reviewer=reviewer)
    scores = {name: round(0.2 + 0.2 * i, 2) for i, name in enumerate(CRITERIA)}
    scores[CRITERIA[-1]] = None  # "cannot judge" leaves the mean, the other weights renormalise
    event = services.label_submit(patch=patch, reviewer=reviewer, scores=scores)
    _, weights = active_weights()
    assert event.final_score == weighted_mean(scores, weights.weights)


def test_editing_appends_an_event_that_supersedes_the_old_one(reviewer):
    patch = queued_patch()
    services.claim_patch(patch=patch, reviewer=reviewer)
    first = _label(patch, reviewer, 0.5)
    second = _label(patch, reviewer, 0.7, base_event_id=first.pk)
    assert second.supersedes_id == first.pk
    assert LabelEvent.objects.get(pk=first.pk).subscores[CRITERIA[0]]["human"] == 0.5


def test_stale_edit_is_refused_and_nothing_is_written(reviewer):
    patch = queued_patch()
    services.claim_patch(patch=patch, reviewer=reviewer)
    first = _label(patch, reviewer, 0.5)
    _label(patch, reviewer, 0.6, base_event_id=first.pk)
    with pytest.raises(services.LabelConflict, match="Nothing was overwritten"):
        _label(patch, reviewer, 0.9, base_event_id=first.pk)
    assert LabelEvent.objects.filter(patch=patch).count() == 2


def test_second_first_label_from_another_tab_is_a_conflict(reviewer):
    patch = queued_patch()
    services.claim_patch(patch=patch, reviewer=reviewer)
    _label(patch, reviewer, 0.5)
    with pytest.raises(services.LabelConflict):
        _label(patch, reviewer, 0.9, base_event_id=None)
    assert LabelEvent.objects.filter(patch=patch).count() == 1


def test_label_without_a_seat_is_refused(reviewer):
    patch = queued_patch()
    with pytest.raises(services.LabelConflict):
        _label(patch, reviewer)
    assert not LabelEvent.objects.exists()


@pytest.mark.parametrize("bad", [{CRITERIA[0]: 1.5}, {CRITERIA[0]: "abc"}, {"charm": 0.5}])
def test_bad_scores_are_refused_with_a_message(reviewer, bad):
    patch = queued_patch()
    services.claim_patch(patch=patch, reviewer=reviewer)
    with pytest.raises(services.ReviewError):
        services.label_submit(patch=patch, reviewer=reviewer, scores=bad)
    assert not LabelEvent.objects.exists()


def test_item_needing_two_labels_is_reviewed_after_the_second(make_user):
    first, second = make_user("a1", "reviewer")[0], make_user("a2", "reviewer")[0]
    patch = queued_patch(labels_per_item=2)
    for user in (first, second):
        services.claim_patch(patch=patch, reviewer=user)
    _label(patch, first)
    patch.refresh_from_db()
    assert patch.status == PatchStatus.NEEDS_REVIEW
    _label(patch, second)
    patch.refresh_from_db()
    assert patch.status == PatchStatus.REVIEWED


def test_task_is_broken_label_has_no_scores(reviewer):
    patch = queued_patch()
    services.claim_patch(patch=patch, reviewer=reviewer)
    event = services.label_submit(
        patch=patch, reviewer=reviewer, scores={}, comment="the benchmark imports a missing module", task_broken=True
    )
    assert event.task_broken and event.final_score is None
    assert all(sub["human"] is None for sub in event.subscores.values())
