"""The /weights/ page and /api/v1/weights/: admins only, and what an admin does there."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from scoring.accounts import token_create
from scoring.models import Evaluation, Patch, PatchStatus, ReaggregationJob, WeightProfile
from tests.weights.factories import DEFAULT, KNOTS, make_label, make_scored_patch, new_version
from tuning import urls as weights_urls

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"
IN_BAND_NOW = {"correctness": 1.0, "style": 0.0, "security": 0.0}


def every_weights_url(pk: int) -> list[tuple[str, str]]:
    """(method, path) of every route in tuning.urls, so a new endpoint cannot skip the role check."""
    out = []
    for pattern in weights_urls.urlpatterns:
        kwargs = {"pk": pk} if "<int:pk>" in str(pattern.pattern) else {}
        path = reverse(pattern.name, kwargs=kwargs)
        callback = pattern.callback
        view_class = getattr(callback, "view_class", None)
        if view_class is not None:
            methods = [m for m in ("get", "post") if hasattr(view_class, m)]
        else:
            methods = ["post"] if re.search(r"what-if|fit|save|activate", path) else ["get"]
        out.extend((method, path) for method in methods)
    return out


def form_data(**changes) -> dict:
    data = {f"weight_{name}": value for name, value in DEFAULT.items()}
    data |= {"band_low": 0.5, "band_high": 0.7, "audit_rate": 0.0, "name": "test", "note": "", "last_n": 100}
    data |= {"knot_ratio": [k[0] for k in KNOTS], "knot_score": [k[1] for k in KNOTS]}
    data.update(changes)
    return data


@pytest.fixture
def admin_client(client, admin):
    client.login(username="ada", password=PASSWORD)
    return client


@pytest.fixture
def admin_api(admin):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=admin)}")
    return api


# --- who may come in ---------------------------------------------------------------------------------------


def test_a_reviewer_gets_403_on_every_weights_page_and_endpoint(client, reviewer, base_profile):
    client.login(username="rita", password=PASSWORD)
    job = ReaggregationJob.objects.get()
    urls = every_weights_url(base_profile.pk) + every_weights_url(job.pk)
    assert len({path for _, path in urls}) >= 13
    for method, path in urls:
        response = getattr(client, method)(path)
        assert response.status_code == 403, (method, path, response.status_code)
    assert WeightProfile.objects.count() == 1 and ReaggregationJob.objects.count() == 1


def test_a_reviewer_token_gets_403_on_the_api(make_user, reviewer, base_profile):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=reviewer)}")
    assert api.get("/api/v1/weights/").status_code == 403
    assert api.post(f"/api/v1/weights/{base_profile.pk}/activate/").status_code == 403


def test_a_client_token_gets_403_on_the_api(api, base_profile):
    assert api.get("/api/v1/weights/").status_code == 403
    assert api.post("/api/v1/weights/", {"weights": DEFAULT}, format="json").status_code == 403


def test_anonymous_visitors_are_sent_to_login_and_the_api_refuses_them(client, base_profile):
    for method, path in every_weights_url(base_profile.pk):
        response = getattr(client, method)(path)
        if path.startswith("/api/"):
            assert response.status_code in (401, 403), path
        else:
            assert response.status_code == 302, path
            assert response["Location"].startswith("/accounts/login/"), path


# --- the page ----------------------------------------------------------------------------------------------


def test_the_page_shows_a_slider_and_a_number_per_criterion_the_band_and_the_history(
    admin_client, admin, base_profile, django_assert_max_num_queries
):
    for i in range(5):
        new_version(admin, note=f"try {i}")
    with django_assert_max_num_queries(12):
        response = admin_client.get("/weights/")
    page = response.content.decode()
    assert response.status_code == 200
    for name in DEFAULT:
        assert f'name="weight_{name}"' in page and f'data-sync="weight_{name}"' in page
    assert 'name="band_low"' in page and 'name="band_high"' in page
    assert "Fit to human labels" in page and "chart-4.6.1.umd.min.js" in page
    assert page.count("Roll back to v") == 0 and page.count("Activate test v") == 5


def test_the_what_if_region_shows_counts_and_plot_data(admin_client, admin, base_profile):
    make_scored_patch(IN_BAND_NOW, ratio=1.0)
    eager = {"weight_correctness": 0.8, "weight_style": 0.05, "weight_performance": 0.05, "weight_security": 0.1}
    response = admin_client.post("/weights/what-if/", form_data(**eager), HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert response.status_code == 200
    assert '<strong id="whatif-leaving">1</strong>' in page
    chart = json.loads(re.search(r'id="whatif-data"[^>]*>(.*?)</script>', page, re.S).group(1))
    assert sum(chart["now"]) == sum(chart["proposed"]) == 1
    assert chart["now"][6] == 1 and chart["proposed"][8] == 1  # 0.6 now, 0.86 proposed


def test_an_invalid_proposal_shows_what_is_wrong_in_the_what_if(admin_client, base_profile):
    response = admin_client.post("/weights/what-if/", form_data(band_low=0.9, band_high=0.2))
    assert response.status_code == 200
    assert "need 0 &lt;= low &lt;= high &lt;= 1" in response.content.decode()


def test_the_fit_button_shows_the_fitted_weights_and_their_error(admin_client, reviewer, base_profile):
    for c, s in [(1.0, 0.0), (0.0, 1.0), (0.5, 0.5), (0.9, 0.2), (0.3, 0.8), (0.7, 0.1)]:
        patch = make_scored_patch({"correctness": c, "style": s, "security": 1.0}, ratio=1.0)
        make_label(patch, reviewer, final=round(0.7 * c + 0.3 * s, 4))  # people weigh correctness 0.7
    response = admin_client.post("/weights/fit/", form_data())
    page = response.content.decode()
    assert 'data-fit-weight="correctness"' in page and "RMSE" in page
    assert WeightProfile.objects.count() == 1  # nothing applied


def test_saving_makes_a_new_version_and_bad_input_is_refused(admin_client, base_profile):
    response = admin_client.post("/weights/save/", form_data(band_low=0.45, note="wider"))
    assert response.status_code == 302
    saved = WeightProfile.objects.get(name="test", version=2)
    assert saved.band_low == 0.45 and saved.note == "wider" and not saved.is_active
    refused = admin_client.post("/weights/save/", form_data(weight_style=-1))
    assert refused.status_code == 400
    assert "every weight must be a number" in refused.content.decode()
    assert WeightProfile.objects.count() == 2


def test_activating_from_the_page_shows_a_progress_bar_that_stops_polling_when_done(admin_client, admin, base_profile):
    make_scored_patch(IN_BAND_NOW, ratio=1.0)
    eager = new_version(admin, weights={"correctness": 0.8, "style": 0.1, "performance": 0.05, "security": 0.05})
    response = admin_client.post(f"/weights/{eager.pk}/activate/", follow=True)
    page = response.content.decode()
    job = ReaggregationJob.objects.filter(profile=eager).get()
    assert f'hx-get="/weights/jobs/{job.pk}/"' in page and "<progress" in page
    assert "Roll back to v1" in page

    from tuning import services as svc

    svc.reaggregate(profile=eager, job=job)
    done = admin_client.get(f"/weights/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    assert done.status_code == 286  # htmx: stop polling
    assert "1 left it" in done.content.decode() and "hx-get" not in done.content.decode()


# --- the API -----------------------------------------------------------------------------------------------


def test_an_admin_token_creates_a_version_from_only_the_fields_it_changes(admin_api, base_profile):
    response = admin_api.post("/api/v1/weights/", {"band_low": 0.4, "note": "api"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["name"], body["version"], body["band_low"]) == ("test", 2, 0.4)
    assert body["weights"] == DEFAULT and body["created_by"] == "ada"


def test_the_api_refuses_a_bad_proposal_with_the_field(admin_api, base_profile):
    response = admin_api.post("/api/v1/weights/", {"audit_rate": 3}, format="json")
    assert response.status_code == 400
    assert "audit_rate" in response.json()["errors"]


def test_stored_versions_cannot_be_edited_through_the_api(admin_api, base_profile):
    for method in ("put", "patch", "delete"):
        response = getattr(admin_api, method)(f"/api/v1/weights/{base_profile.pk}/", {"band_low": 0.1}, format="json")
        assert response.status_code == 405
    assert WeightProfile.objects.get(pk=base_profile.pk).band_low == 0.5


def test_the_api_what_if_activate_and_rollback(admin_api, admin, base_profile):
    patch = make_scored_patch(IN_BAND_NOW, ratio=1.0)
    eager = {"correctness": 0.8, "style": 0.1, "performance": 0.05, "security": 0.05}
    preview = admin_api.post("/api/v1/weights/what-if/", {"weights": eager, "last_n": 50}, format="json").json()
    assert (preview["leaving"], preview["entering"], preview["n"]) == (1, 0, 1)

    created = admin_api.post("/api/v1/weights/", {"weights": eager}, format="json").json()
    job = admin_api.post(f"/api/v1/weights/{created['id']}/activate/").json()
    assert job["status"] == "pending"
    from tuning import services as svc

    svc.reaggregate(profile=WeightProfile.objects.get(pk=created["id"]), job=ReaggregationJob.objects.get(pk=job["id"]))
    assert admin_api.get(f"/api/v1/weights/jobs/{job['id']}/").json()["left"] == 1
    assert Patch.objects.get(pk=patch.pk).status == PatchStatus.SCORED

    rollback = admin_api.post(f"/api/v1/weights/{base_profile.pk}/activate/").json()
    svc.reaggregate(profile=base_profile, job=ReaggregationJob.objects.get(pk=rollback["id"]))
    assert Patch.objects.get(pk=patch.pk).status == PatchStatus.NEEDS_REVIEW
    assert Evaluation.objects.get(patch=patch).weight_profile == base_profile
    actions = [row["action"] for row in admin_api.get("/api/v1/weights/audit/").json()]
    assert actions[:3] == ["activated", "activated", "created"]


def test_the_api_fit_without_labels_says_so(admin_api, base_profile):
    response = admin_api.post("/api/v1/weights/fit/", {}, format="json")
    assert response.status_code == 409
    assert "no labelled patches" in response.json()["detail"]


def test_the_openapi_schema_lists_the_weights_endpoints(admin_client):
    schema = admin_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert {"/api/v1/weights/", "/api/v1/weights/what-if/", "/api/v1/weights/{id}/activate/"} <= set(schema["paths"])
    assert {"WhatIf", "WeightProfile", "WeightFit", "ReaggregationJob"} <= set(schema["components"]["schemas"])
