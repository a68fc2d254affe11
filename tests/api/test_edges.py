"""The edges of the API: hostile sizes, depths, encodings and numbers get a 4xx in the API's error shape that names
the limit, never a 500; limits come from settings.LIMITS; `make run` serves without Django's debug pages."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.django_db


def post_raw(api, path: str, body: bytes, content_type: str = "application/json"):
    return api.generic("POST", path, body, content_type=content_type)


def assert_error(response, status: int, *needles: str) -> None:
    """A refusal in the API's shape: `status`, JSON with a `detail` that says each of `needles`."""
    assert response.status_code == status, response.content[:500]
    detail = response.json()["detail"]
    for needle in needles:
        assert needle in detail, detail


# --- pages and numbers ------------------------------------------------------------------------------------


def test_a_page_limit_past_any_integer_is_capped_and_answered(api, tiny_task, fix_diff, settings):
    assert api.post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff}, format="json").status_code == 202
    for path in ("/api/v1/patches/", "/api/v1/tasks/"):
        response = api.get(path, {"limit": "100000000000000000000"})
        assert response.status_code == 200, response.content
        assert len(response.json()["results"]) <= settings.LIMITS["PAGE_SIZE"]
    settings.LIMITS = dict(settings.LIMITS, PAGE_SIZE=1)
    assert api.post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff + "\n"}, format="json").status_code in (
        202,
        400,
    )
    assert len(api.get("/api/v1/patches/", {"limit": "5"}).json()["results"]) == 1


def test_an_offset_past_any_integer_gets_400_naming_the_limit(api, tiny_task):
    for offset in ("100000000000000000000", "1" + "0" * 30):
        assert_error(api.get("/api/v1/tasks/", {"offset": offset}), 400, "offset", "at most")  # offset pages


def test_ids_past_64_bits_in_a_path_or_a_filter_get_400_or_404_not_500(api, make_user, tiny_task):
    huge = "9" * 25
    assert api.get(f"/api/v1/patches/{huge}/").status_code in (400, 404)
    assert api.delete(f"/api/v1/patches/{huge}/").status_code in (400, 404)
    assert api.get("/api/v1/patches/", {"ids": huge}).status_code == 400
    reviewer, _ = make_user("rhea", "reviewer")
    from django.test import Client

    page = Client()
    page.force_login(reviewer)
    assert page.get(f"/review/{huge}/").status_code in (400, 404)


# --- parse errors: depth, encoding, numbers, size ------------------------------------------------------------


@pytest.mark.parametrize("opening,closing", [("[", "]"), ('{"a":', "}")])
def test_a_json_body_nested_50000_deep_gets_400_not_a_recursion_error(api, tiny_task, opening, closing):
    body = (opening * 50_000 + "1" + closing * 50_000).encode()
    for path in ("/api/v1/patches/", "/api/v1/rewards/"):
        assert_error(post_raw(api, path, body), 400, "nested deeper than", "REVIEWAPP_MAX_JSON_DEPTH")


def test_metadata_nested_past_the_depth_limit_gets_400_and_within_it_is_accepted(api, tiny_task, fix_diff, settings):
    depth = settings.LIMITS["JSON_DEPTH"]

    def nested(levels: int) -> dict:
        value: dict = {}
        for _ in range(levels):
            value = {"k": value}
        return value

    deep = {"task": "tiny", "diff": fix_diff, "metadata": nested(depth + 1)}
    assert_error(api.post("/api/v1/patches/", deep, format="json"), 400, "nested deeper than")
    shallow = {"task": "tiny", "diff": fix_diff, "metadata": nested(depth - 3)}
    assert api.post("/api/v1/patches/", shallow, format="json").status_code == 202


@pytest.mark.parametrize(
    "body,content_type,needle",
    [
        (b'{"task": "tiny", "diff": "\xff\xfe"}', "application/json", "not valid utf-8"),
        (b'{"task": "tiny"}', "application/json; charset=rot13", "unknown text encoding"),
        (b'{"task": "tiny"}', "application/json; charset=base64", "unknown text encoding"),
        (b'{"task": "tiny"}', "application/json; charset=no-such-charset", ""),
        (b'{"task": "tiny", "metadata": {"x": 1e400}}', "application/json", "out of range"),
        (b'{"task": "tiny", "metadata": {"x": NaN}}', "application/json", "not valid JSON"),
        (b'{"task": "tiny", "metadata": {"x": -Infinity}}', "application/json", "not valid JSON"),
        (b'{"task": "tiny", "metadata": {"x": ' + b"9" * 5000 + b"}}", "application/json", "JSON parse error"),
        (b'{"task": "tiny", "diff": "\\ud800"', "application/json", "JSON parse error"),
    ],
)
def test_bodies_that_do_not_decode_get_400_in_the_api_error_shape(api, tiny_task, body, content_type, needle):
    response = post_raw(api, "/api/v1/patches/", body, content_type)
    assert response.status_code == 400, response.content[:300]
    assert needle.lower() in response.json()["detail"].lower()


def test_a_body_past_the_request_limit_gets_413_naming_it(api, tiny_task, fix_diff, settings):
    settings.LIMITS = dict(settings.LIMITS, REQUEST_BYTES=10_000)
    body = json.dumps({"task": "tiny", "diff": fix_diff, "metadata": {"pad": "x" * 20_000}}).encode()
    assert_error(post_raw(api, "/api/v1/patches/", body), 413, "10000 bytes", "REVIEWAPP_MAX_REQUEST_BYTES")
    assert_error(post_raw(api, "/api/v1/rewards/", body), 413, "REVIEWAPP_MAX_REQUEST_BYTES")


# --- sizes bounded everywhere --------------------------------------------------------------------------------


def test_metadata_past_its_limit_gets_400_naming_it_alone_or_in_a_batch(api, tiny_task, fix_diff, settings):
    from scoring.models import Patch

    limit = settings.LIMITS["METADATA_BYTES"]
    big = {"blob": "x" * (limit + 1)}
    one = api.post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff, "metadata": big}, format="json")
    assert_error(one, 400, "metadata", str(limit), "REVIEWAPP_MAX_METADATA_BYTES")
    # Many small keys add up the same way; multi-byte characters count as their UTF-8 bytes.
    wide = {f"k{i}": "é" * 100 for i in range(limit // 150)}
    assert_error(api.post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff, "metadata": wide}, format="json"), 400)
    batch = [{"task": "tiny", "diff": fix_diff, "external_id": f"b{i}", "metadata": big} for i in range(3)]
    assert_error(api.post("/api/v1/patches/", batch, format="json"), 400, "REVIEWAPP_MAX_METADATA_BYTES")
    assert Patch.objects.count() == 0


def test_an_external_id_past_its_limit_gets_400_naming_it(api, tiny_task, fix_diff, settings):
    too_long = "k" * (settings.LIMITS["EXTERNAL_ID_CHARS"] + 1)
    one = api.post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff, "external_id": too_long}, format="json")
    assert_error(one, 400, "external_id", "200 characters")
    rewards = {"task": "tiny", "completions": [fix_diff], "external_ids": [too_long], "wait_s": 0}
    assert_error(api.post("/api/v1/rewards/", rewards, format="json"), 400, "external_ids")


def test_a_batch_past_its_byte_total_gets_413_naming_it_and_stores_nothing(api, tiny_task, fix_diff, settings):
    from scoring.models import Patch

    settings.LIMITS = dict(settings.LIMITS, BATCH_BYTES=len(fix_diff) * 5)
    batch = [{"task": "tiny", "diff": fix_diff, "external_id": f"e{i}"} for i in range(10)]  # few items, many bytes
    assert_error(api.post("/api/v1/patches/", batch, format="json"), 413, "REVIEWAPP_MAX_BATCH_BYTES")
    rewards = {"task": "tiny", "completions": [fix_diff] * 10, "wait_s": 0}
    assert_error(api.post("/api/v1/rewards/", rewards, format="json"), 413, "REVIEWAPP_MAX_BATCH_BYTES")
    assert Patch.objects.count() == 0
    assert api.post("/api/v1/patches/", batch[:2], format="json").status_code == 202


def test_a_label_comment_or_note_past_its_limit_is_refused_naming_it_and_nothing_is_saved(make_user, settings):
    from labeling.models import LabelEvent
    from labeling.services import ReviewError, label_submit
    from tests.exports.factories import make_patch, make_task

    reviewer, _ = make_user("rita", "reviewer")
    patch = make_patch(make_task("limits"))
    limit = settings.LIMITS["LABEL_COMMENT_CHARS"]
    scores = {"correctness": 0.5}
    with pytest.raises(ReviewError, match="REVIEWAPP_MAX_LABEL_COMMENT_CHARS") as refused:
        label_submit(patch=patch, reviewer=reviewer, scores=scores, comment="c" * (limit + 1))
    assert refused.value.status == 400 and str(limit) in str(refused.value)
    note = "n" * (settings.LIMITS["LABEL_NOTE_CHARS"] + 1)
    with pytest.raises(ReviewError, match="REVIEWAPP_MAX_LABEL_NOTE_CHARS"):
        label_submit(patch=patch, reviewer=reviewer, scores=scores, notes={"style": note})
    assert not LabelEvent.objects.exists()


# --- debug pages ---------------------------------------------------------------------------------------------


def test_an_unknown_url_answers_404_listing_nothing(api, client):
    for response in (api.get("/api/v1/no-such-thing/"), client.get("/no-such-page/")):
        assert response.status_code == 404
        body = response.content.decode()
        assert "api/v1/" not in body and "urlpatterns" not in body.lower() and "review/" not in body
    assert api.get("/api/v1/no-such-thing/").json() == {"detail": "Not found."}


def test_make_run_serves_without_debug_pages_unless_asked():
    def serve_line(*args: str) -> str:
        done = subprocess.run(
            ["make", "-n", "run", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
        )
        return next(line for line in done.stdout.splitlines() if "manage.py serve" in line)

    assert "DEBUG=0" in serve_line()
    assert "DEBUG=1" in serve_line("DEBUG=1")
