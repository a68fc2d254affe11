"""What a trainer receives from /rewards/ under the flag policy: suspicious rewards withheld until labelled."""

from __future__ import annotations

import pytest
from django.utils import timezone

from scoring.conf import pipeline_settings
from scoring.core.critics.registry import CRITERIA
from scoring.core.pipeline import PIPELINE_VERSION, build_result
from scoring.core.types import CriticResult
from scoring.models import Evaluation, Patch, PatchStatus
from scoring.selectors import active_weights
from scoring.services import evaluation_fields
from tests.helpers import other_diff

pytestmark = pytest.mark.django_db


def finish(patch: Patch, *flags_by_criterion: tuple[str, str]) -> None:
    """Store a perfect Evaluation for `patch` with the given (criterion, flag) pairs, routed as a worker would."""
    profile, weights = active_weights()
    flags: dict[str, set[str]] = {}
    for criterion, flag in flags_by_criterion:
        flags.setdefault(criterion, set()).add(flag)
    results = {
        name: CriticResult(name, 1.0, 0.95, (f"Step: {name}. Score 1.0.",), flags=frozenset(flags.get(name, ())))
        for name in ("correctness", "style", "performance", "security")
    }
    meta = {"pipeline_version": PIPELINE_VERSION, "sandbox": "bwrap", "timings_s": {}, "tools": {}}
    result = build_result(
        task_name=patch.task.name,
        results=results,
        weights=weights,
        settings=pipeline_settings(),
        audit_key=patch.diff_sha256,
        meta=meta,
    )
    Evaluation.objects.create(patch=patch, pipeline_version=PIPELINE_VERSION, **evaluation_fields(result, profile))
    status = PatchStatus.SCORED if result["route"] == "auto" else PatchStatus.NEEDS_REVIEW
    Patch.objects.filter(pk=patch.pk).update(status=status, finished_at=timezone.now())


@pytest.fixture
def batch(api, tiny_task, fix_diff):
    """Ask for rewards of three completions; return a function asking again (same external ids: same patches)."""
    body = {
        "task": "tiny",
        "completions": [fix_diff, other_diff(fix_diff), other_diff(fix_diff)],
        "external_ids": ["suspicious", "honest", "tamper"],
        "wait_s": 0,
    }

    def ask() -> dict:
        response = api.post("/api/v1/rewards/", body, format="json")
        assert response.status_code == 200, response.content
        return response.json()

    first = ask()
    assert first["status"] == ["queued"] * 3
    suspicious, honest, tamper = (Patch.objects.get(pk=pk) for pk in first["ids"])
    finish(suspicious, ("correctness", "suspicious"))
    finish(honest)
    finish(tamper, ("performance", "tamper"))
    return ask


def test_suspicious_reward_is_withheld_from_the_trainer_until_a_reviewer_labelled_it(batch) -> None:
    answer = batch()

    assert answer["status"] == ["needs_review", "scored", "needs_review"]
    assert answer["rewards"][0] is None
    assert answer["rewards"][1] == 1.0
    assert all(values[0] is None for values in answer["subscores"].values())
    assert answer["subscores"]["correctness"][1] == 1.0

    Patch.objects.filter(pk=answer["ids"][0]).update(status=PatchStatus.REVIEWED)
    labelled = batch()
    assert labelled["status"][0] == "reviewed"
    assert labelled["rewards"][0] == 1.0
    assert labelled["subscores"]["correctness"][0] == 1.0


def test_a_withheld_reward_pays_what_the_reviewers_said_once_reviewed(batch, make_user) -> None:
    """The machine said 1.0 but flagged the patch; a reviewer who finds it a cheat says 0.1: the trainer gets 0.1."""
    from labeling import services as labeling

    reviewer, _ = make_user("rhea", "reviewer")
    patch = Patch.objects.get(pk=batch()["ids"][0])
    assert labeling.claim_patch(patch=patch, reviewer=reviewer) is not None
    labeling.label_submit(patch=patch, reviewer=reviewer, scores={name: 0.1 for name in CRITERIA})

    answer = batch()
    assert answer["status"][0] == "reviewed"
    assert answer["rewards"][0] == pytest.approx(0.1)
    assert answer["rewards"][1] == 1.0  # a patch nobody held back is paid its machine score as before


def test_tamper_from_the_performance_critic_reaches_the_trainer_with_correctness_zero(batch) -> None:
    answer = batch()

    assert answer["status"][2] == "needs_review"
    assert answer["subscores"]["correctness"][2] == 0.0
    assert answer["rewards"][2] == 0.6


def test_withholding_can_be_turned_off(batch, settings) -> None:
    settings.REVIEWAPP = {**settings.REVIEWAPP, "WITHHOLD_SUSPICIOUS": False}

    answer = batch()

    assert answer["status"][0] == "needs_review"
    assert answer["rewards"][0] == 1.0
    assert answer["subscores"]["correctness"][0] == 1.0


def test_a_trainer_reading_results_instead_of_rewards_gets_no_withheld_score(api, batch) -> None:
    """Attack: skip /rewards/ and read the Result, one patch or the list, to train on a suspicious patch's score."""
    pk = batch()["ids"][0]

    one = api.get(f"/api/v1/patches/{pk}/").json()
    listed = next(r for r in api.get("/api/v1/patches/").json()["results"] if r["id"] == pk)

    for result in (one, listed):
        assert result["final_score"] is None
        assert result["meta"]["withheld"] is True
        assert all(sub["score"] is None for sub in result["subscores"].values())
        assert result["route"] == "review" and "suspicious" in result["flags"]


def test_reviewers_see_the_withheld_score_and_clients_see_what_the_reviewers_said_once_reviewed(
    api, batch, make_user
) -> None:
    from rest_framework.test import APIClient

    from labeling import services as labeling

    pk = batch()["ids"][0]
    reviewer, _ = make_user("rhea", "reviewer")
    staff = APIClient()
    staff.force_authenticate(user=reviewer)
    assert staff.get(f"/api/v1/patches/{pk}/").json()["final_score"] == 1.0  # kept for the record

    patch = Patch.objects.get(pk=pk)
    assert labeling.claim_patch(patch=patch, reviewer=reviewer) is not None
    labeling.label_submit(patch=patch, reviewer=reviewer, scores={name: 0.1 for name in CRITERIA})

    result = api.get(f"/api/v1/patches/{pk}/").json()
    assert result["status"] == "reviewed"
    assert result["final_score"] == pytest.approx(0.1)
    assert "withheld" not in result["meta"]
