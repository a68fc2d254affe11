"""/exports/ and /api/v1/exports/ as admins and reviewers meet them: access, progress, downloads, critic metrics."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from rest_framework.test import APIClient

from exports import services as exports
from exports.services import export_job_run, export_job_start
from labeling.models import CriticRun, ExportJob
from scoring.accounts import token_create
from tests.exports.factories import make_label, make_patch, make_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(make_user):
    return make_user("ada", "admin")[0]


@pytest.fixture
def reviewer(make_user):
    return make_user("rita", "reviewer")[0]


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=user)}")
    return client


def labelled_patch(reviewer, name="gcd", n=0):
    make_label(make_patch(make_task(name), n), reviewer, {"correctness": 0.8}, comment="fine")


@pytest.mark.parametrize("url", ["/exports/", "/exports/jobs/1/", "/exports/jobs/1/download/"])
def test_anonymous_visitor_is_sent_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize(
    "url", ["/exports/", "/exports/jobs/1/", "/exports/jobs/1/download/", "/exports/jobs/1/manifest/"]
)
def test_reviewer_gets_403_on_the_export_pages(client, reviewer, url):
    client.force_login(reviewer)
    assert client.get(url).status_code == 403
    assert client.post("/exports/start/", {"format": "sft"}).status_code == 403
    assert not ExportJob.objects.exists()


@pytest.mark.parametrize(
    "url", ["/api/v1/exports/", "/api/v1/exports/critic-runs/", "/api/v1/exports/1/", "/api/v1/exports/1/download/"]
)
def test_reviewer_token_gets_403_on_the_export_api(reviewer, url):
    api = api_as(reviewer)
    assert api.get(url).status_code == 403
    assert api.post("/api/v1/exports/", {"format": "sft"}).status_code == 403


def test_admin_page_offers_the_formats_and_charts_critic_versions(client, admin, django_assert_max_num_queries):
    for version, rate in (("v1", 0.5), ("v2", 0.9)):
        CriticRun.objects.create(version=version, model_dir=f"/m/{version}", data="sft.jsonl", rows=10,
                                 valid_json_rate=rate, band_agreement=0.7, correctness_agreement=None,
                                 mae={"correctness": 0.2, "style": None})  # fmt: skip
    client.force_login(admin)
    with django_assert_max_num_queries(8):
        page = client.get("/exports/")
    assert page.status_code == 200
    html = page.content.decode()
    for fmt in ("sft", "pairwise", "raw"):
        assert f'<option value="{fmt}">' in html
    assert 'name="include_demo"' in html and "No export yet." in html
    assert 'id="chart-critic"' in html and "chart-4.6.1.umd.min.js" in html
    chart = json.loads(html.split('id="critic-data" type="application/json">')[1].split("</script>")[0])
    assert chart["series"][0] == {"label": "valid JSON rate", "data": [0.5, 0.9]}
    assert chart["series"][3]["data"] == [0.2, 0.2]


def test_progress_polls_until_the_export_is_done_then_offers_the_file(client, admin, reviewer):
    labelled_patch(reviewer)
    job = export_job_start(fmt="sft", user=admin)
    client.force_login(admin)
    pending = client.get(f"/exports/jobs/{job.pk}/")
    assert pending.status_code == 200 and f'hx-get="/exports/jobs/{job.pk}/"' in pending.content.decode()
    assert client.get(f"/exports/jobs/{job.pk}/download/").status_code == 404
    export_job_run(job=job)
    done = client.get(f"/exports/jobs/{job.pk}/")
    assert done.status_code == 286  # htmx: stop polling
    assert "Download the file" in done.content.decode() and "hx-get" not in done.content.decode()
    download = client.get(f"/exports/jobs/{job.pk}/download/")
    body = b"".join(download.streaming_content)
    job.refresh_from_db()
    assert hashlib.sha256(body).hexdigest() == job.manifest["sha256"] and job.manifest["rows"] == 1
    assert download["Content-Disposition"].startswith("attachment")
    manifest = json.loads(b"".join(client.get(f"/exports/jobs/{job.pk}/manifest/").streaming_content))
    assert manifest == job.manifest


def test_api_refuses_an_unknown_format_or_margin(admin):
    api = api_as(admin)
    assert api.post("/api/v1/exports/", {"format": "xml"}).status_code == 400
    assert api.post("/api/v1/exports/", {"format": "pairwise", "min_margin": 0}).status_code == 400
    assert not ExportJob.objects.exists()


@pytest.mark.parametrize("fmt", exports.FORMATS)
def test_api_starts_a_job_in_every_format(admin, fmt):
    """Every format's name fits its column (PostgreSQL refuses what SQLite stores: a 500 the fuzzer found)."""
    response = api_as(admin).post("/api/v1/exports/", {"format": fmt})
    assert response.status_code == 202, response.content
    assert ExportJob.objects.get().fmt == fmt


def wait_for(job_id: int, timeout_s: float = 90) -> ExportJob:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = ExportJob.objects.get(pk=job_id)
        if job.status in ("done", "failed"):
            return job
        time.sleep(0.3)
    pytest.fail(f"export {job_id} did not finish in {timeout_s} s")


@pytest.mark.django_db(transaction=True)
def test_exports_run_on_the_worker_from_the_page_and_the_api(celery_worker, client, admin, reviewer):
    labelled_patch(reviewer, "gcd", 0)
    labelled_patch(reviewer, "fib", 1)
    client.force_login(admin)
    assert client.post("/exports/start/", {"format": "sft", "with_execution": "on"}).status_code == 302
    from_page = wait_for(ExportJob.objects.get().pk)
    assert from_page.status == "done", from_page.error
    assert from_page.manifest["rows"] == 4 and from_page.manifest["filters"]["with_execution"] is True

    api = api_as(admin)
    started = api.post("/api/v1/exports/", {"format": "raw"}, format="json")
    assert started.status_code == 202 and started.json()["download"] is None
    job = wait_for(started.json()["id"])
    detail = api.get(f"/api/v1/exports/{job.pk}/").json()
    assert detail["status"] == "done" and detail["manifest"]["rows"] == 2
    body = b"".join(api.get(detail["download"]).streaming_content)
    assert len(body.splitlines()) == 2 and hashlib.sha256(body).hexdigest() == detail["manifest"]["sha256"]
    listed = api.get("/api/v1/exports/").json()
    assert [j["id"] for j in listed] == [job.pk, from_page.pk]
