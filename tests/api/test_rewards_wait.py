"""/rewards/ against a real ASGI server: a waiting call holds no thread and wakes when its patch finishes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.utils import timezone

from scoring import notify, services
from scoring.conf import pipeline_settings
from scoring.core.pipeline import PIPELINE_VERSION, build_result
from scoring.core.types import CriticResult
from scoring.health import redis_client
from scoring.models import Evaluation, Patch, PatchStatus
from scoring.selectors import active_weights
from tests.helpers import other_diff

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def finish_as_a_worker(patch_id: int) -> None:
    """End a queued patch the way a worker does: claim it, store a perfect Evaluation, move it to scored."""
    patch = services.patch_claim(patch_id=patch_id, token=f"test-{patch_id}", lease_s=60, stage="static")
    assert patch is not None
    profile, weights = active_weights()
    results = {
        name: CriticResult(name, 1.0, 0.95, (f"Step: {name}. Score 1.0.",))
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
    Evaluation.objects.create(
        patch=patch, pipeline_version=PIPELINE_VERSION, **services.evaluation_fields(result, profile)
    )
    target = PatchStatus.SCORED if result["route"] == "auto" else PatchStatus.NEEDS_REVIEW
    assert services.patch_transition(
        patch_id=patch_id, source=(PatchStatus.RUNNING,), target=target, lease_until=None, finished_at=timezone.now()
    )


def wait_for_rows(count: int, timeout_s: float = 60) -> list[int]:
    """The ids of the first `count` patches, once that many exist."""
    deadline = time.monotonic() + timeout_s
    while (found := Patch.objects.count()) < count:
        assert time.monotonic() < deadline, f"only {found} of {count} calls reached the server"
        time.sleep(0.1)
    return list(Patch.objects.order_by("pk").values_list("pk", flat=True)[:count])


def post_rewards(url: str, token: str, body: dict) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = httpx.post(f"{url}/api/v1/rewards/", json=body, headers={"Authorization": f"Token {token}"}, timeout=200)
    return time.monotonic() - started, response


def test_a_waiting_call_answers_when_its_patch_finishes_not_when_wait_s_ends(
    web_server, client_token, tiny_task, fix_diff
) -> None:
    # Database re-reads only every 300 s: an answer within seconds can only come from the notification.
    server = web_server(REVIEWAPP_REWARDS_RECHECK_S="300")
    body = {"task": "tiny", "completions": [fix_diff], "wait_s": 60}
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(post_rewards, server.url, client_token, body)
        (patch_id,) = wait_for_rows(1)
        time.sleep(1)  # the call is past its first database read, waiting
        # A message is a hint: one that lies (the patch is still queued) does not end the wait.
        redis_client().publish(notify.CHANNEL, str(patch_id))
        time.sleep(1.5)
        assert not call.done()
        finished = time.monotonic()
        finish_as_a_worker(patch_id)
        _, response = call.result(timeout=90)
    answered_after_s = time.monotonic() - finished

    assert response.status_code == 200, response.text
    assert response.json()["status"] == ["scored"]
    assert response.json()["rewards"] == [1.0]
    assert answered_after_s < 20


def test_a_lost_notification_only_delays_the_answer(web_server, client_token, tiny_task, fix_diff) -> None:
    server = web_server(REVIEWAPP_REWARDS_RECHECK_S="1")
    body = {"task": "tiny", "completions": [fix_diff], "wait_s": 60}
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(post_rewards, server.url, client_token, body)
        (patch_id,) = wait_for_rows(1)
        time.sleep(1)
        finished = time.monotonic()
        # Finished without the status write that publishes (as if Redis had dropped the message).
        Patch.objects.filter(pk=patch_id).update(status=PatchStatus.FAILED, finished_at=timezone.now())
        _, response = call.result(timeout=90)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == ["failed"]
    assert time.monotonic() - finished < 20


def test_a_call_whose_patch_does_not_finish_gets_null_after_wait_s(
    web_server, client_token, tiny_task, fix_diff
) -> None:
    server = web_server()

    seconds, response = post_rewards(server.url, client_token, {"task": "tiny", "completions": [fix_diff], "wait_s": 1})

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == ["queued"]
    assert answer["rewards"] == [None]
    assert answer["subscores"]["correctness"] == [None]
    assert 1 <= seconds < 30


def test_fifty_waiting_calls_are_all_held_by_one_process_with_four_threads(
    web_server, client_token, tiny_task, fix_diff
) -> None:
    server = web_server(REVIEWAPP_WEB_THREADS="4")
    diffs = [fix_diff, other_diff(fix_diff)]
    bodies = [
        {"task": "tiny", "completions": [diffs[i % 2]], "external_ids": [f"w{i}"], "wait_s": 120} for i in range(50)
    ]
    with ThreadPoolExecutor(50) as pool:
        calls = [pool.submit(post_rewards, server.url, client_token, body) for body in bodies]
        # Every call got in while the others wait: with a thread parked per wait, 4 would, and no more.
        ids = wait_for_rows(50)
        time.sleep(1)
        threads_while_waiting = server.threads()
        assert not any(call.done() for call in calls)
        for patch_id in ids:
            finish_as_a_worker(patch_id)
        answers = [call.result(timeout=150)[1] for call in calls]

    assert [a.status_code for a in answers] == [200] * 50
    assert all(a.json()["rewards"] == [1.0] for a in answers)
    # The main thread, the 4 request threads and a few of the event loop's own: not one per waiting call.
    assert threads_while_waiting <= 4 + 6, threads_while_waiting
