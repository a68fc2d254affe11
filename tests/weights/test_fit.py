"""The fit of weights to human final scores: a constrained least-squares that recovers known weights."""

from __future__ import annotations

import numpy as np
import pytest

from scoring.core import tuning as tuning_math
from scoring.core.aggregate.route import weighted_mean
from scoring.core.critics.registry import CRITERIA
from scoring.models import WeightProfile
from scoring.selectors import weights_of
from tests.weights.factories import make_label, make_scored_patch
from tuning import services as svc

TRUE = {"correctness": 0.55, "style": 0.05, "performance": 0.15, "security": 0.25}


def synthetic_rows(n: int, *, seed: int, null_performance_every: int = 0) -> list:
    """Subscores drawn at random, labelled with the aggregation under TRUE (what a consistent human would say)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        scores = {name: round(float(rng.uniform()), 4) for name in CRITERIA}
        if null_performance_every and i % null_performance_every == 0:
            scores["performance"] = None
        rows.append((scores, weighted_mean(scores, TRUE)))
    return rows


def test_the_fit_recovers_known_weights_from_synthetic_labels():
    fit = tuning_math.fit_weights(synthetic_rows(80, seed=1))
    assert fit.weights == pytest.approx(TRUE, abs=0.005)
    assert sum(fit.weights.values()) == pytest.approx(1.0, abs=1e-3)
    assert fit.rmse < 0.001 and fit.n == 80


def test_the_fit_models_unmeasured_subscores_the_way_the_aggregation_does():
    fit = tuning_math.fit_weights(synthetic_rows(80, seed=2, null_performance_every=3))
    assert fit.weights == pytest.approx(TRUE, abs=0.005)


def test_fitted_weights_are_never_negative_even_when_a_criterion_hurts():
    # Humans score the opposite of style: the unconstrained fit would give style a negative weight.
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(60):
        scores = {name: float(rng.uniform()) for name in CRITERIA}
        rows.append((scores, 0.7 * scores["correctness"] + 0.3 * (1 - scores["style"])))
    fit = tuning_math.fit_weights(rows)
    assert min(fit.weights.values()) >= 0
    assert fit.weights["style"] == pytest.approx(0.0, abs=1e-3)
    assert sum(fit.weights.values()) == pytest.approx(1.0, abs=1e-3)


def test_the_fit_refuses_to_run_without_labels():
    with pytest.raises(ValueError, match="no labelled"):
        tuning_math.fit_weights([])


@pytest.mark.django_db
def test_fit_to_labels_learns_from_stored_labels_and_saves_nothing(admin, reviewer, base_profile):
    rng = np.random.default_rng(4)
    for _ in range(25):
        scores = {name: round(float(rng.uniform()), 2) for name in ("correctness", "style", "security")}
        patch = make_scored_patch(scores, ratio=float(rng.choice([1.0, 1.2, 1.6])))
        stored = {name: sub["score"] for name, sub in patch.evaluations.get().subscores.items()}
        make_label(patch, reviewer, final=weighted_mean(stored, TRUE))
    profiles = WeightProfile.objects.count()

    report = svc.fit_to_labels(proposed=weights_of(base_profile))

    assert report.fit.weights == pytest.approx(TRUE, abs=0.01)
    assert report.fit.n == 25
    assert report.fit.rmse < 0.01 < report.current_rmse
    assert WeightProfile.objects.count() == profiles


@pytest.mark.django_db
def test_fit_to_labels_without_labels_says_so(base_profile):
    make_scored_patch({"correctness": 1.0, "style": 1.0, "security": 1.0}, ratio=1.0)
    with pytest.raises(svc.ServiceError, match="no labelled patches"):
        svc.fit_to_labels(proposed=weights_of(base_profile))
