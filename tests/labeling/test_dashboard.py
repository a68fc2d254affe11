"""The dashboard's data: queue history, pace, distributions, auto-vs-human points, reviewer agreement."""

from __future__ import annotations

import pytest

from labeling import services
from scoring.core.critics.registry import CRITERIA
from tests.labeling.factories import queued_patch

pytestmark = pytest.mark.django_db


@pytest.fixture
def labelled(make_user):
    """Three items labelled by two reviewers who mostly agree, and one waiting item."""
    first, second = make_user("d1", "reviewer")[0], make_user("d2", "reviewer")[0]
    for value in (0.2, 0.5, 0.9):
        patch = queued_patch(labels_per_item=2)
        for user, delta in ((first, 0.0), (second, 0.05)):
            services.claim_patch(patch=patch, reviewer=user)
            services.label_submit(patch=patch, reviewer=user, scores={n: value + delta for n in CRITERIA})
    queued_patch()
    return first


def _data(client, user, name):
    client.force_login(user)
    response = client.get(f"/dashboard/data/{name}.json")
    assert response.status_code == 200
    return response.json()


def test_agreement_reports_krippendorff_alpha_per_criterion(client, labelled):
    data = _data(client, labelled, "agreement")
    assert data["items"] == 3 and data["reviewers"] == 2
    assert [row["name"] for row in data["criteria"]] == list(CRITERIA)
    assert all(0.9 < row["alpha"] <= 1.0 for row in data["criteria"])


def test_scatter_pairs_automatic_and_human_scores(client, labelled):
    data = _data(client, labelled, "scatter")
    points = data["criteria"][0]["points"]
    assert len(points) == 6
    assert {"x": 0.6, "y": 0.2} in points


def test_distributions_and_pace_count_every_label(client, labelled):
    dist = _data(client, labelled, "distributions")
    assert sum(dist["criteria"][0]["human"]) == 6
    assert sum(dist["criteria"][0]["auto"]) == 4
    pace = _data(client, labelled, "pace")
    assert sum(sum(series["data"]) for series in pace["series"]) == 6
    queue = _data(client, labelled, "queue")
    assert queue["data"][-1] == 1


def test_unknown_chart_is_404(client, labelled):
    client.force_login(labelled)
    assert client.get("/dashboard/data/nope.json").status_code == 404


def test_critic_chart_follows_eval_runs_over_versions(client, labelled):
    from labeling.models import CriticRun

    for version, rate in (("v1", 0.5), ("v2", 0.9)):
        CriticRun.objects.create(
            version=version, model_dir="/m", data="/d", rows=4, valid_json_rate=rate, mae={"correctness": 0.2}
        )
    data = _data(client, labelled, "critic")
    assert [label.split(" ")[0] for label in data["labels"]] == ["v1", "v2"]
    rates = next(s for s in data["series"] if s["label"] == "valid JSON rate")
    assert rates["data"] == [0.5, 0.9]
