"""A weight profile chooses its reward shaping; the what-if shows what gating would do before it is applied."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from scoring.models import WeightProfile
from tests.weights.factories import make_scored_patch, new_version
from tests.weights.test_views import form_data
from tuning import services as svc

NO_OP = {"correctness": 0.0, "style": 1.0, "security": 1.0}

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, admin):
    from tests.weights.test_views import PASSWORD

    client.login(username="ada", password=PASSWORD)
    return client


def test_the_what_if_shows_a_no_op_patch_dropping_to_zero_under_gating(admin_client, admin, base_profile):
    make_scored_patch(NO_OP, ratio=1.0)  # 0.6 under the active plain sum: in the band
    response = admin_client.post("/weights/what-if/", form_data(shaping="gated"), HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert response.status_code == 200
    assert '<strong id="whatif-shaping">gated</strong>' in page
    assert '<strong id="whatif-leaving">1</strong>' in page  # no longer borderline: it is worth nothing
    chart = json.loads(re.search(r'id="whatif-data"[^>]*>(.*?)</script>', page, re.S).group(1))
    assert chart["now"][6] == 1 and chart["proposed"][0] == 1


def test_a_profile_saved_with_gating_keeps_it_and_scores_with_it(admin_client, admin, base_profile):
    page = admin_client.get("/weights/").content.decode()
    assert 'name="shaping" value="gated"' in page and 'value="sum" checked' in page
    profile = new_version(admin, name="gated", shaping="gated")
    assert WeightProfile.objects.get(pk=profile.pk).shaping == "gated"
    patch = make_scored_patch(NO_OP, ratio=1.0)
    job = svc.profile_activate(profile=profile, actor=admin)
    svc.reaggregate(profile=profile, job=job)
    evaluation = patch.evaluations.get()
    assert (evaluation.final_score, evaluation.weight_profile_id) == (0.0, profile.pk)


def test_an_unknown_shaping_is_refused_naming_the_choices(admin):
    with pytest.raises(svc.WeightsInvalid) as refused:
        new_version(admin, shaping="product")
    assert refused.value.errors["shaping"] == "choose one of sum, gated"


@pytest.mark.slow
def test_a_gated_profile_skips_the_benchmark_of_a_patch_whose_tests_fail(admin, base_profile):
    """The bench stage sees the exec stage's correctness and the active shaping: under gating, a failed patch's
    performance cannot move the reward, so its benchmark never runs; under the plain sum it gets a verdict."""
    import hashlib

    from scoring.core.intake.spec import parse_spec
    from scoring.models import Patch
    from scoring.services import patch_score_inline, task_create_from_dirs

    demo = Path(__file__).resolve().parents[2] / "scoring" / "demo" / "tasks" / "textstats"
    task = task_create_from_dirs(spec=parse_spec((demo / "spec.json").read_text(), spec_dir=demo), shared=True)
    diff = (demo / "patches" / "bad_docstring_only.diff").read_text()  # changes no behaviour: the tests still fail

    def perf(external_id: str) -> dict:
        patch = Patch.objects.create(
            task=task, diff=diff, diff_sha256=hashlib.sha256(diff.encode()).hexdigest(), external_id=external_id
        )
        assert patch_score_inline(patch=patch)
        subscores = patch.evaluations.get().subscores
        assert subscores["correctness"]["score"] == 0.0
        return subscores["performance"]

    # Under the sum it gets the cheapest verdict that holds: here the coverage shortcut (a docstring runs nothing).
    summed = perf("under-sum")
    assert summed["score"] == 1.0 and summed["evidence"]["shortcut"] == "coverage"
    svc.profile_activate(profile=new_version(admin, name="gated", shaping="gated"), actor=admin)
    gated = perf("under-gating")
    assert gated["score"] is None and gated["evidence"]["shortcut"] == "correctness_gate"
