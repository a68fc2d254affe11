"""End to end through a real Celery worker on a real Redis: submit over HTTP, get a scored Result."""

from __future__ import annotations

import time

import pytest

from scoring.models import Evaluation, Patch


def _wait_done(pk: int, timeout_s: float = 180) -> Patch:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        patch = Patch.objects.get(pk=pk)
        if patch.status not in ("queued", "running"):
            return patch
        time.sleep(0.5)
    pytest.fail(f"patch {pk} still {Patch.objects.get(pk=pk).status} after {timeout_s} s")


@pytest.mark.slow
def test_a_fix_submitted_over_http_is_scored_once_by_the_worker(celery_worker, api, tiny_task, fix_diff):
    pk = api.post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff, "external_id": "e2e"}, format="json").json()[
        "id"
    ]
    patch = _wait_done(pk)
    assert patch.status in ("scored", "needs_review"), patch.reason
    assert Evaluation.objects.filter(patch=patch).count() == 1
    result = api.get(f"/api/v1/patches/{pk}/").json()
    assert result["subscores"]["correctness"]["score"] == 1.0
    assert result["final_score"] is not None
    assert set(result["subscores"]) >= {"correctness", "style", "security"}
    hidden = result["subscores"]["correctness"]["evidence"].get("hidden", {})
    assert "tests" not in hidden  # API clients see counts only


@pytest.mark.slow
def test_rewards_endpoint_returns_rewards_in_order_and_zero_for_unusable_completions(
    celery_worker, api, tiny_task, fix_diff
):
    completions = [
        f"Here is my fix:\n```diff\n{fix_diff}```\n",
        "I could not do it.",
        [{"role": "assistant", "content": fix_diff}],
    ]
    response = api.post(
        "/api/v1/rewards/",
        {"task": "tiny", "completions": completions, "wait_s": 120},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"][1] == "rejected"
    assert body["rewards"][1] == 0.0
    assert body["rewards"][0] is not None and body["rewards"][0] > 0.5
    assert body["rewards"][0] == body["rewards"][2]
    assert len(body["subscores"]["correctness"]) == 3


@pytest.mark.slow
def test_a_short_wait_returns_partial_results_not_an_error(celery_worker, api, tiny_task, fix_diff):
    response = api.post("/api/v1/rewards/", {"task": "tiny", "completions": [fix_diff], "wait_s": 0}, format="json")
    assert response.status_code == 200
    assert response.json()["rewards"] == [None]
