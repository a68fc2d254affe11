"""The TRL and OpenRLHF adapters, called the way the libraries call them, against the live server with a real
Celery worker scoring through the real pipeline (the libraries themselves run in test_trainers_real.py)."""

from __future__ import annotations

import asyncio
import inspect
import logging

import pytest

from scoring.client import (
    AsyncRewardClient,
    trl_reward_func,
    trl_reward_funcs_per_criterion,
)
from scoring.models import Patch
from scoring.openrlhf_reward import reward_func

pytestmark = pytest.mark.django_db(transaction=True)

GARBAGE = "I refactored everything, trust me."


def _chat(content: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": content}]


def _trl_call(function, completions, tasks):
    """Call a reward function the way GRPOTrainer._calculate_rewards does (TRL 0.2x-1.x)."""
    return function(
        prompts=[[{"role": "user", "content": "Fix calc.add"}]] * len(completions),
        completions=completions,
        completion_ids=[[101, 102, 103]] * len(completions),
        task=tasks,
        difficulty=["easy"] * len(completions),  # another dataset column: ignored
        trainer_state=None,
        log_extra=lambda column, values: None,
        log_metric=lambda name, value: None,
    )


@pytest.mark.slow
def test_trainer_adapters_score_chat_batches_in_order_with_one_call_per_batch(
    celery_worker, reward_client, fix_diff, live_server, client_token, monkeypatch
):
    fenced = f"Here is the fix:\n```diff\n{fix_diff}```\nDone."
    completions = [_chat(fenced), _chat(GARBAGE), fix_diff]

    # TRL: the reward and the four criteria, as five reward_funcs entries sharing one scoring call.
    functions = trl_reward_funcs_per_criterion(reward_client, wait_s=120)
    assert [f.__name__ for f in functions] == [
        "reviewapp_reward",
        "reviewapp_correctness",
        "reviewapp_style",
        "reviewapp_performance",
        "reviewapp_security",
    ]
    by_name = {f.__name__: _trl_call(f, completions, ["tiny"] * 3) for f in functions}
    assert Patch.objects.count() == 3  # one /rewards/ call for the five functions, not five
    rewards = by_name["reviewapp_reward"]
    assert rewards[0] is not None and rewards[0] > 0.5
    assert rewards[1] == 0.0  # no usable diff: rejected, worth nothing
    assert rewards[2] == rewards[0]  # the same fix, as a bare diff string
    assert by_name["reviewapp_correctness"][0] == 1.0
    assert by_name["reviewapp_correctness"][1] is None  # a rejected completion was never measured
    assert by_name["reviewapp_performance"] == [None, None, None]  # the tiny task has no benchmark
    assert all(0.0 <= value <= 1.0 for value in by_name["reviewapp_style"][::2])

    # The Results of the same kind of batch, from the blocking and the async client (idempotent keys: the
    # async call finds the patches the blocking one made, and reads the same Results).
    results = reward_client.score("tiny", [fix_diff, GARBAGE], external_ids=["r-fix", "r-garbage"])
    assert [r["external_id"] for r in results] == ["r-fix", "r-garbage"]
    assert results[0]["status"] in ("scored", "needs_review")
    assert results[0]["final_score"] == rewards[0]
    assert results[0]["subscores"]["correctness"]["rationale"]
    assert (results[1]["status"], results[1]["final_score"]) == ("rejected", 0.0)
    again = asyncio.run(
        AsyncRewardClient(live_server.url, client_token).score(
            "tiny", [fix_diff, GARBAGE], external_ids=["r-fix", "r-garbage"], wait_s=5
        )
    )
    assert again == results

    # OpenRLHF: queries are prompt + response, labels name the task, the service from the environment.
    monkeypatch.setenv("REVIEWAPP_URL", live_server.url)
    monkeypatch.setenv("REVIEWAPP_TOKEN", client_token)
    prompt = "<|user|>Fix calc.add, which subtracts.<|assistant|>"
    out = reward_func([prompt + fenced, prompt + GARBAGE], [prompt, prompt], ["tiny", "tiny"])
    assert out["rewards"].tolist() == pytest.approx([rewards[0], 0.0])
    assert out["scores"].tolist() == out["rewards"].tolist()
    assert out["extra_logs"]["correctness"].tolist() == [1.0, 0.0]
    assert out["extra_logs"]["reviewapp/unscored"].tolist() == [0.0, 0.0]
    assert set(out["extra_logs"]) == {"correctness", "style", "performance", "security", "reviewapp/unscored"}


def test_a_short_wait_gives_none_for_unfinished_and_zero_for_unusable_completions(
    redis_server, reward_client, fix_diff, live_server, client_token, monkeypatch, caplog
):
    # No worker runs: the fix stays queued, so a short wait must answer with None for it, never an error.
    reward_fn = trl_reward_func(reward_client, wait_s=0.5)
    assert reward_fn.__name__ == "reviewapp_reward"
    batch = [_chat(GARBAGE), _chat(fix_diff)]
    assert _trl_call(reward_fn, batch, ["tiny", "tiny"]) == [0.0, None]
    assert Patch.objects.count() == 2
    _trl_call(reward_fn, batch, ["tiny", "tiny"])  # the same rows at the next step are new rollouts
    assert Patch.objects.count() == 4

    results = reward_client.score("tiny", [fix_diff], wait_s=0)
    assert (results[0]["status"], results[0]["final_score"]) == ("queued", None)

    # OpenRLHF tensors cannot hold None: unfinished counts as 0.0, marked in extra_logs and warned about.
    monkeypatch.setenv("REVIEWAPP_URL", live_server.url)
    monkeypatch.setenv("REVIEWAPP_TOKEN", client_token)
    monkeypatch.setenv("REVIEWAPP_WAIT_S", "0")
    with caplog.at_level(logging.WARNING, logger="reviewapp_client.openrlhf"):
        out = reward_func(["P" + fix_diff], ["P"], ["tiny"])
    assert out["rewards"].tolist() == [0.0]
    assert out["extra_logs"]["reviewapp/unscored"].tolist() == [1.0]
    assert "1 of 1 rollouts have no reward (['queued']), counted as 0.0" in caplog.text


def test_async_trl_reward_function_is_awaitable_and_reports_a_missing_task_column(reward_client, live_server):
    from scoring.client import RewardServiceError

    async_fn = trl_reward_func(AsyncRewardClient(live_server.url, "wrong-token"))
    assert inspect.iscoroutinefunction(async_fn)  # TRL gathers async reward functions on its own loop
    with pytest.raises(RewardServiceError) as raised:
        asyncio.run(_trl_call(async_fn, [_chat(GARBAGE)], ["tiny"]))
    assert raised.value.status == 401

    with pytest.raises(
        ValueError, match=r"no 'task' column in the batch; the dataset has \['difficulty', 'task_name'\]"
    ):
        trl_reward_func(reward_client)(prompts=["p"], completions=["c"], task_name=["tiny"], difficulty=["easy"])
