"""The client against the live server (no worker needed: unusable completions are final at once), through a
loopback proxy that fails on cue: retries, refusals, idempotency, and batches that mix tasks."""

from __future__ import annotations

import threading
import time

import pytest

from scoring.client import RewardClient, RewardServiceError
from scoring.models import Patch
from tests.client.conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)

NO_DIFF = "Sorry, I could not find the bug."


def test_client_retries_503_and_dropped_connections_and_a_lost_answer_scores_once(flaky_proxy, client_token, tiny_task):
    proxy = flaky_proxy(["lost", "503", "drop"])
    with RewardClient(proxy.url, client_token, retries=3, backoff_s=0.05) as client:
        answer = client.rewards("tiny", [NO_DIFF, NO_DIFF], wait_s=0)

    assert answer["rewards"] == [0.0, 0.0]
    assert answer["status"] == ["rejected", "rejected"]
    assert [method for method, _, _ in proxy.requests] == ["POST"] * 4
    # The first request was carried out but its answer lost: the retry found the same two patches.
    assert Patch.objects.count() == 2
    assert sorted(answer["ids"]) == sorted(Patch.objects.values_list("pk", flat=True))


def test_client_waits_for_a_service_that_is_still_starting(flaky_proxy, client_token, tiny_task):
    port = free_port()
    threading.Timer(0.4, flaky_proxy, args=([],), kwargs={"port": port}).start()
    with RewardClient(f"http://127.0.0.1:{port}", client_token, retries=4, backoff_s=0.25) as client:
        assert client.rewards("tiny", [NO_DIFF], wait_s=0)["rewards"] == [0.0]


def test_client_honours_retry_after_when_the_queue_is_full(flaky_proxy, client_token, tiny_task):
    proxy = flaky_proxy(["429"])
    with RewardClient(proxy.url, client_token, retries=1, backoff_s=0.01) as client:
        started = time.monotonic()
        client.rewards("tiny", [NO_DIFF], wait_s=0)
    assert time.monotonic() - started >= 1.0  # the proxy said Retry-After: 1
    assert len(proxy.requests) == 2


def test_client_gives_up_with_a_clear_error_when_the_service_never_answers(client_token):
    client = RewardClient(f"http://127.0.0.1:{free_port()}", client_token, retries=2, backoff_s=0.01)
    with client, pytest.raises(RewardServiceError, match="unreachable after 3 tries") as raised:
        client.rewards("tiny", [NO_DIFF], wait_s=0)
    assert raised.value.status is None


def test_refusals_raise_the_server_detail_without_retrying(flaky_proxy, client_token, tiny_task, fix_diff):
    proxy = flaky_proxy([])
    with RewardClient(proxy.url, client_token, retries=3, backoff_s=0.01) as client:
        with pytest.raises(RewardServiceError, match="unknown task 'nope'") as raised:
            client.rewards("nope", [NO_DIFF], wait_s=0)
        assert raised.value.status == 400
        assert len(proxy.requests) == 1

        client.submit("tiny", fix_diff, external_id="key-1")
        with pytest.raises(RewardServiceError, match="already used for another diff") as raised:
            client.submit("tiny", fix_diff.replace("a + b", "b + a"), external_id="key-1")
        assert raised.value.status == 409

        with pytest.raises(RewardServiceError, match="diff") as raised:
            client.submit("tiny", "not a diff at all")
        assert raised.value.status == 400
    assert Patch.objects.count() == 1  # only the accepted patch left a row


def test_rows_of_two_tasks_get_one_call_per_task_and_answers_in_row_order(
    flaky_proxy, client_token, tiny_task, second_task
):
    proxy = flaky_proxy([])
    tasks = ["tiny", "tiny2", "tiny", "tiny2", "tiny2"]
    completions = [f"no diff in row {row}" for row in range(len(tasks))]
    with RewardClient(proxy.url, client_token) as client:
        answer = client.rewards_by_task(tasks, completions, wait_s=0)

    calls = sorted(
        (body["task"], body["completions"]) for _, path, body in proxy.requests if path.endswith("/rewards/")
    )
    assert calls == [
        ("tiny", ["no diff in row 0", "no diff in row 2"]),
        ("tiny2", ["no diff in row 1", "no diff in row 3", "no diff in row 4"]),
    ]
    patches = {p.pk: p for p in Patch.objects.select_related("task")}
    assert [patches[pk].task.name for pk in answer["ids"]] == tasks
    assert [patches[pk].diff for pk in answer["ids"]] == completions
    assert answer["rewards"] == [0.0] * 5
    assert set(answer["subscores"]) == {"correctness", "style", "performance", "security"}
