"""Weight profiles through the services: versions, activation and re-routing, the what-if, rollback."""

from __future__ import annotations

import pytest

from scoring.conf import pipeline_settings
from scoring.core import tuning as tuning_math
from scoring.core.aggregate.route import aggregate
from scoring.core.critics.registry import BY_NAME
from scoring.core.types import CriticResult
from scoring.models import Evaluation, Patch, PatchStatus, ReaggregationJob, WeightAudit, WeightProfile
from scoring.selectors import weights_of
from tests.weights.factories import DEFAULT, make_claim, make_label, make_scored_patch, new_version
from tuning import services as svc

pytestmark = pytest.mark.django_db

#: Correctness 1, style and security 0, same speed: 0.6 under the defaults (in the band), 0.87 under EAGER.
IN_BAND_NOW = {"correctness": 1.0, "style": 0.0, "security": 0.0}
#: Correctness 0.5, the rest perfect: 0.8 under the defaults (auto), 0.6 under EAGER (in the band).
ABOVE_BAND_NOW = {"correctness": 0.5, "style": 1.0, "security": 1.0}
#: Correctness dominates.
EAGER = {"correctness": 0.8, "style": 0.2 / 3, "performance": 0.2 / 3, "security": 0.2 / 3}


def status_of(patch: Patch) -> str:
    return Patch.objects.get(pk=patch.pk).status


def activate(profile: WeightProfile, actor) -> dict:
    """Activate and run the re-aggregation here (the Celery path has its own test)."""
    job = svc.profile_activate(profile=profile, actor=actor)
    return svc.reaggregate(profile=profile, job=job)


# --- versions ----------------------------------------------------------------------------------------------


def test_editing_a_profile_makes_a_new_version_and_leaves_the_old_one_untouched(admin, base_profile):
    before = WeightProfile.objects.filter(pk=base_profile.pk).values().get()
    edited = new_version(admin, band_low=0.4, note="wider band")
    assert (edited.name, edited.version) == ("test", 2)
    assert WeightProfile.objects.filter(pk=base_profile.pk).values().get() == before
    assert edited.band_low == 0.4 and not edited.is_active


def test_weights_are_normalised_to_sum_to_one(admin):
    profile = new_version(admin, weights={"correctness": 2, "style": 1, "performance": 1, "security": 0})
    assert profile.weights == {"correctness": 0.5, "style": 0.25, "performance": 0.25, "security": 0.0}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"weights": {**DEFAULT, "style": -0.1}}, "weights"),
        ({"weights": {"correctness": 1.0}}, "weights"),
        ({"weights": {**DEFAULT, "speed": 0.1}}, "weights"),
        ({"weights": dict.fromkeys(DEFAULT, 0)}, "weights"),
        ({"weights": {**DEFAULT, "style": "lots"}}, "weights"),
        ({"band_low": 0.8, "band_high": 0.6}, "band"),
        ({"band_high": 1.2}, "band"),
        ({"audit_rate": 1.5}, "audit_rate"),
        ({"perf_knots": [[1.3, 0.4], [1.05, 1.0]]}, "perf_knots"),
        ({"perf_knots": [[1.05, 0.4], [1.3, 1.0]]}, "perf_knots"),
        ({"perf_knots": [[1.05, 1.0]]}, "perf_knots"),
        ({"perf_knots": "fast"}, "perf_knots"),
        ({"name": "no spaces allowed"}, "name"),
    ],
)
def test_an_invalid_proposal_is_refused_naming_the_field_and_nothing_is_stored(admin, changes, field):
    with pytest.raises(svc.WeightsInvalid) as refused:
        new_version(admin, **changes)
    assert field in refused.value.errors
    assert not WeightProfile.objects.filter(name=changes.get("name", "test")).exists()


def test_the_audit_log_says_who_created_what_and_who_activated_it(admin, base_profile):
    edited = new_version(admin, weights=EAGER)
    svc.profile_activate(profile=edited, actor=admin)
    created = WeightAudit.objects.get(profile=edited, action="created")
    assert created.actor == admin
    old, new = created.detail["changes"]["weights"]
    assert old == DEFAULT and new["correctness"] == 0.8
    assert "band_low" not in created.detail["changes"]
    activated = WeightAudit.objects.get(profile=edited, action="activated")
    assert activated.actor == admin and activated.detail["previous"] == "test v1"


def test_exactly_one_profile_is_active_after_activation(admin, base_profile):
    edited = new_version(admin, weights=EAGER)
    svc.profile_activate(profile=edited, actor=admin)
    assert list(WeightProfile.objects.filter(is_active=True)) == [edited]


# --- re-aggregation ----------------------------------------------------------------------------------------


def test_reaggregation_equals_the_pure_aggregation_of_stored_subscores(admin, base_profile):
    patches = [
        make_scored_patch({"correctness": c, "style": s, "security": sec}, ratio=ratio)
        for c, s, sec, ratio in [
            (1.0, 0.9, 1.0, 1.0),
            (0.0, 1.0, 1.0, 1.2),
            (0.75, 0.3, 0.6, 1.5),
            (1.0, 0.0, 0.2, 2.5),
            (0.5, 0.5, 0.5, 1.1),
        ]
    ]
    patches.append(make_scored_patch({"correctness": 0.8, "style": 0.4, "security": 1.0, "performance": None}))
    stored = {p.pk: p.evaluations.get().subscores for p in patches}
    profile = new_version(admin, weights=EAGER, perf_knots=[[1.1, 1.0], [1.5, 0.2], [3.0, 0.0]])
    weights = weights_of(profile)

    counts = activate(profile, admin)

    assert counts["processed"] == len(patches)
    for patch in patches:
        evaluation = Evaluation.objects.get(patch=patch)
        results = {
            name: BY_NAME[name].rescore(CriticResult.from_json(name, data), weights)
            for name, data in stored[patch.pk].items()
        }
        expected = aggregate(
            results,
            weights,
            audit_key=patch.diff_sha256,
            confidence_threshold=pipeline_settings().heal_confidence_threshold,
        )
        assert evaluation.final_score == expected.final_score
        assert evaluation.route == expected.route
        assert evaluation.weight_profile == profile
        assert evaluation.subscores["performance"]["score"] == results["performance"].score
    # The new knots moved the performance subscore of the 1.2x patch: re-scored from its stored ratio.
    slow = Evaluation.objects.get(patch=patches[1]).subscores["performance"]
    assert slow["score"] != stored[patches[1].pk]["performance"]["score"]


def test_reaggregation_rewrites_what_the_queue_filters_on(admin, base_profile, settings):
    patch = make_scored_patch({"correctness": 1.0, "style": 0.5, "security": 1.0}, ratio=1.0)
    evaluation = Evaluation.objects.get(patch=patch)
    performance = evaluation.subscores["performance"]["confidence"]
    assert evaluation.doubt == []  # every confidence is at or above the default threshold

    # Both thresholds above the subscores' confidences (0.95 for the others): every measured criterion is in doubt.
    settings.REVIEWAPP = {**settings.REVIEWAPP, "HEAL_CONFIDENCE": max(performance, 0.95) + 0.01}
    activate(new_version(admin, weights=EAGER), admin)

    evaluation.refresh_from_db()
    assert evaluation.doubt == ["correctness", "style", "performance", "security"]
    assert evaluation.min_confidence == min(sub["confidence"] for sub in evaluation.subscores.values())


def test_activation_moves_patches_across_the_band_by_the_status_transitions(admin, base_profile):
    leaves = make_scored_patch(IN_BAND_NOW, ratio=1.0)
    enters = make_scored_patch(ABOVE_BAND_NOW, ratio=1.0)
    assert (status_of(leaves), status_of(enters)) == (PatchStatus.NEEDS_REVIEW, PatchStatus.SCORED)

    counts = activate(new_version(admin, weights=EAGER), admin)

    assert (status_of(leaves), status_of(enters)) == (PatchStatus.SCORED, PatchStatus.NEEDS_REVIEW)
    assert (counts["left"], counts["entered"], counts["held"]) == (1, 1, 0)
    assert Evaluation.objects.get(patch=leaves).route == "auto"
    assert Evaluation.objects.get(patch=enters).route == "review"


def test_a_claimed_or_labelled_patch_stays_in_the_queue(admin, reviewer, base_profile):
    claimed = make_scored_patch(IN_BAND_NOW, ratio=1.0)
    labelled = make_scored_patch(IN_BAND_NOW, ratio=1.0)
    lapsed = make_scored_patch(IN_BAND_NOW, ratio=1.0)
    make_claim(claimed, reviewer)
    make_label(labelled, reviewer, final=0.55)
    make_claim(lapsed, reviewer, live=False)

    counts = activate(new_version(admin, weights=EAGER), admin)

    assert status_of(claimed) == status_of(labelled) == PatchStatus.NEEDS_REVIEW
    assert status_of(lapsed) == PatchStatus.SCORED  # an expired claim holds nothing
    assert (counts["held"], counts["left"]) == (2, 1)
    held = Evaluation.objects.get(patch=claimed)
    assert held.route == "review" and held.final_score > 0.7  # the new score, routed where the patch is


def test_a_learned_critics_disagreement_survives_re_aggregation(admin, base_profile):
    """The critic's view lives in the Evaluation's meta; the one scoring path reads it, so activating another profile
    keeps the flag and the queue place instead of rebuilding flags from the subscores alone."""
    patch = make_scored_patch(IN_BAND_NOW, ratio=1.0)
    evaluation = Evaluation.objects.get(patch=patch)
    evaluation.meta = {**evaluation.meta, "critic": {"status": "ok", "disagrees": ["correctness"], "model": "m"}}
    evaluation.flags = [*evaluation.flags, "critic_disagrees"]
    evaluation.save(update_fields=["meta", "flags"])

    counts = activate(new_version(admin, weights=EAGER), admin)  # out of the band now: it would leave the queue

    evaluation.refresh_from_db()
    assert "critic_disagrees" in evaluation.flags
    assert evaluation.route == "review" and evaluation.final_score > 0.7
    assert status_of(patch) == PatchStatus.NEEDS_REVIEW and counts["left"] == 0


def test_a_failed_critic_view_routes_nothing(admin, base_profile):
    patch = make_scored_patch(IN_BAND_NOW, ratio=1.0)
    evaluation = Evaluation.objects.get(patch=patch)
    evaluation.meta = {**evaluation.meta, "critic": {"status": "failed", "error": "no verdict"}}
    evaluation.save(update_fields=["meta"])
    activate(new_version(admin, weights=EAGER), admin)
    evaluation.refresh_from_db()
    assert "critic_disagrees" not in evaluation.flags and evaluation.route == "auto"


def test_reviewed_and_failed_patches_keep_their_status(admin, base_profile):
    reviewed = make_scored_patch(IN_BAND_NOW, ratio=1.0, status=PatchStatus.REVIEWED)
    activate(new_version(admin, weights=EAGER), admin)
    assert status_of(reviewed) == PatchStatus.REVIEWED
    assert Evaluation.objects.get(patch=reviewed).final_score > 0.8  # re-scored all the same


def test_rolling_back_restores_the_earlier_scores_and_queue(admin, base_profile):
    patches = [make_scored_patch(IN_BAND_NOW, ratio=1.3), make_scored_patch(ABOVE_BAND_NOW, ratio=1.0)]
    before = {p.pk: (status_of(p), Evaluation.objects.get(patch=p).final_score) for p in patches}
    activate(new_version(admin, weights=EAGER), admin)
    assert {p.pk: (status_of(p), Evaluation.objects.get(patch=p).final_score) for p in patches} != before

    activate(base_profile, admin)

    assert {p.pk: (status_of(p), Evaluation.objects.get(patch=p).final_score) for p in patches} == before
    assert Evaluation.objects.filter(weight_profile=base_profile).count() == 2


def test_reaggregating_twice_moves_nothing_the_second_time(admin, base_profile):
    make_scored_patch(IN_BAND_NOW, ratio=1.0)
    profile = new_version(admin, weights=EAGER)
    assert activate(profile, admin)["left"] == 1
    assert svc.reaggregate(profile=profile) == {"processed": 1, "entered": 0, "left": 0, "held": 0}


def test_a_job_overtaken_by_another_activation_stops_as_superseded(admin, base_profile):
    patch = make_scored_patch(IN_BAND_NOW, ratio=1.0)
    eager = new_version(admin, weights=EAGER)
    job = svc.profile_activate(profile=eager, actor=admin)
    svc.profile_activate(profile=base_profile, actor=admin)  # the admin changed their mind at once

    svc.reaggregate(profile=eager, job=job)

    job.refresh_from_db()
    assert job.status == ReaggregationJob.Status.SUPERSEDED
    assert Evaluation.objects.get(patch=patch).weight_profile == base_profile
    assert status_of(patch) == PatchStatus.NEEDS_REVIEW


def test_job_progress_counts_every_evaluation(admin, base_profile):
    for _ in range(5):
        make_scored_patch(ABOVE_BAND_NOW, ratio=1.0)
    profile = new_version(admin, weights=EAGER)
    job = svc.profile_activate(profile=profile, actor=admin)
    svc.reaggregate(profile=profile, job=job, batch_size=2)
    job.refresh_from_db()
    assert (job.status, job.total, job.processed, job.entered) == ("done", 5, 5, 5)
    assert job.finished_at is not None


# --- what-if -----------------------------------------------------------------------------------------------


def test_the_what_if_counts_match_what_activation_then_does(admin, reviewer, base_profile):
    for scores, ratio in [(IN_BAND_NOW, 1.0), (IN_BAND_NOW, 1.4), (ABOVE_BAND_NOW, 1.0), (ABOVE_BAND_NOW, 1.1)]:
        make_scored_patch(scores, ratio=ratio)
    held = make_scored_patch(IN_BAND_NOW, ratio=1.0)
    make_claim(held, reviewer)
    make_scored_patch({"correctness": 1.0, "style": 1.0, "security": 1.0}, ratio=1.0)  # stays auto
    make_scored_patch({"correctness": None, "style": 1.0, "security": 1.0}, ratio=1.0)  # stays in review
    profile = new_version(
        admin, weights=EAGER, band_low=0.55, perf_knots=[[1.2, 1.0], [1.5, 0.5], [2.0, 0.0]], audit_rate=0.05
    )

    preview = svc.what_if(proposed=weights_of(profile), last_n=100)
    counts = activate(profile, admin)

    assert (preview.entering, preview.leaving, preview.held) == (counts["entered"], counts["left"], counts["held"])
    assert preview.leaving > 0 and preview.entering > 0 and preview.held == 1
    finals = sorted(Evaluation.objects.values_list("final_score", flat=True), key=lambda s: (s is None, s))
    assert preview.proposed == tuning_math.histogram(finals)[0]
    assert preview.unscored_proposed == 1 and preview.n == 7


def test_the_what_if_predicts_the_audit_sample_of_the_new_rate(admin, base_profile):
    for _ in range(8):
        make_scored_patch({"correctness": 1.0, "style": 1.0, "security": 1.0}, ratio=1.0)
    profile = new_version(admin, audit_rate=0.5)

    preview = svc.what_if(proposed=weights_of(profile), last_n=100)
    counts = activate(profile, admin)

    assert preview.entering == counts["entered"] == Evaluation.objects.filter(route="audit").count() > 0


def test_the_what_if_changes_nothing(admin, base_profile):
    patch = make_scored_patch(IN_BAND_NOW, ratio=1.0)
    before = Evaluation.objects.filter(patch=patch).values().get()
    svc.what_if(proposed=weights_of(new_version(admin, weights=EAGER)), last_n=10)
    assert Evaluation.objects.filter(patch=patch).values().get() == before
    assert status_of(patch) == PatchStatus.NEEDS_REVIEW


def test_the_what_if_measures_distance_to_human_final_scores(admin, reviewer, base_profile):
    patch = make_scored_patch(IN_BAND_NOW, ratio=1.0)  # 0.6 now, 0.8667 under EAGER
    make_label(patch, reviewer, final=0.85)
    preview = svc.what_if(proposed=weights_of(new_version(admin, weights=EAGER)), last_n=10)
    assert preview.labelled == 1
    assert preview.distance_now == pytest.approx(0.25)
    assert preview.distance_proposed == pytest.approx(0.0167, abs=1e-4)


def test_the_what_if_looks_at_the_last_n_patches_only(admin, base_profile):
    for _ in range(4):
        make_scored_patch(IN_BAND_NOW, ratio=1.0)
    assert svc.what_if(proposed=weights_of(base_profile), last_n=3).n == 3
