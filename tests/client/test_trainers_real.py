"""The adapters inside the real libraries, on CPU, against the live service and a real Celery worker.

TRL: GRPOTrainer runs two optimizer steps of a tiny Llama built here from a config, with the adapter as its
reward_funcs. Tested with trl 1.16.0, transformers 5.25.0, torch 2.13.0+cpu; docs/rl.md copies this
configuration. Timed: `make test` prints the slowest tests (--durations) of the `trainers` suite.
"""

from __future__ import annotations

import time

import pytest
from reviewapp_client import trl_reward_funcs_per_criterion

from scoring.models import Patch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.trainers, pytest.mark.slow]

GARBAGE = "I rewrote calc, trust me, it is fine now."
PROMPT = "calc.add subtracts instead of adding. Answer with a unified diff in a ```diff block."


def _scripted_policy(fix_diff: str):
    """A rollout_func whose policy answers each prompt with the fix and with prose: a random tiny model writes no
    diff, and the point is that real patches reach the worker and their rewards reach the loss."""
    answers = [f"Here is the fix:\n```diff\n{fix_diff}```", GARBAGE]

    def rollout(prompts, trainer):
        tokenizer = trainer.processing_class
        prompt_ids, completion_ids = [], []
        for index, prompt in enumerate(prompts):  # TRL hands each prompt num_generations times, in a row
            ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
            prompt_ids.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
            answer = answers[index % len(answers)]
            completion_ids.append(tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}

    return rollout


def test_grpo_trainer_takes_two_steps_on_the_services_rewards(
    celery_worker, reward_client, fix_diff, tmp_path, monkeypatch
):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from scoring.core.learned.tiny import build_tiny_model

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    started = time.monotonic()
    model_dir = build_tiny_model(tmp_path / "policy", corpus=[PROMPT, fix_diff, GARBAGE])
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": PROMPT}], "task": "tiny"}] * 4)

    # The configuration docs/rl.md shows, shrunk to CPU: subscores logged at weight 0, the reward trains.
    reward_funcs = trl_reward_funcs_per_criterion(reward_client, task_column="task", wait_s=120)
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        num_generations=2,
        per_device_train_batch_size=2,
        max_steps=2,
        max_completion_length=256,
        reward_weights=[1.0, 0.0, 0.0, 0.0, 0.0],
        learning_rate=1e-4,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        seed=0,
    )
    trainer = GRPOTrainer(
        model=str(model_dir),
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        rollout_func=_scripted_policy(fix_diff),
    )
    before = {name: tensor.detach().clone() for name, tensor in trainer.model.named_parameters()}
    trainer.train()

    assert trainer.state.global_step == 2
    steps = [entry for entry in trainer.state.log_history if "rewards/reviewapp_reward/mean" in entry]
    assert len(steps) == 2
    fix_reward = Patch.objects.filter(status__in=["scored", "needs_review"]).first().evaluations.latest("pk")
    for entry in steps:
        # Per step: one group of [fix, prose]. The fix's reward and the prose's 0.0, averaged by TRL.
        assert entry["rewards/reviewapp_reward/mean"] == pytest.approx(fix_reward.final_score / 2, abs=1e-4)
        # The prose was never measured: its correctness is None, which TRL leaves out of the mean (not 0.0).
        assert entry["rewards/reviewapp_correctness/mean"] == pytest.approx(1.0)
    # Five reward functions, one scoring call: two steps of two completions are four patches, not twenty.
    assert Patch.objects.count() == 4
    statuses = list(Patch.objects.order_by("pk").values_list("status", flat=True))
    assert statuses[1::2] == ["rejected", "rejected"]
    assert set(statuses[::2]) <= {"scored", "needs_review"}
    changed = any(not (before[n] == p.detach()).all() for n, p in trainer.model.named_parameters())
    assert changed, "two GRPO steps with a non-zero advantage must move the policy"
    assert time.monotonic() - started < 120, "the GRPO test must stay well under two minutes"


def _rollout(task, answer: str):
    """A finished verifiers rollout of `task` whose model answered `answer` (as verifiers' own CLI builds one)."""
    import verifiers.v1 as vf
    from verifiers.v1.graph import MessageNode
    from verifiers.v1.state import state_cls

    trace = vf.Trace(
        task=vf.TraceTask(type=type(task).__name__, data=task.data, key=task.key, hash=task.hash),
        state=state_cls(type(task))(),
        agent=vf.AgentInfo(config=vf.AgentConfig(), name="policy", trainable=True),
    )
    trace.nodes.append(MessageNode(message=vf.UserMessage(content=task.data.prompt)))
    trace.nodes.append(MessageNode(parent=0, message=vf.AssistantMessage(content=answer), sampled=True))
    return trace


def test_verifiers_environment_scores_a_dataset_through_the_service(
    celery_worker, reward_client, fix_diff, live_server, client_token, flaky_proxy, monkeypatch
):
    """verifiers 0.4.0: a Taskset of ReviewappTask built from a datasets.Dataset, each rollout scored by the
    task's own @vf.reward through Task.score, concurrently as verifiers scores a group."""
    import asyncio

    from datasets import Dataset
    from reviewapp_client.verifiers import ReviewappTaskset

    proxy = flaky_proxy([])
    monkeypatch.setenv("REVIEWAPP_URL", proxy.url)
    monkeypatch.setenv("REVIEWAPP_TOKEN", client_token)
    monkeypatch.setenv("REVIEWAPP_WAIT_S", "120")
    dataset = Dataset.from_list([{"prompt": PROMPT, "task": "tiny"}] * 4)
    tasks = list(ReviewappTaskset(dataset, task_column="task"))
    assert [task.data.idx for task in tasks] == [0, 1, 2, 3]
    assert tasks[0].data.timeout.scoring == 180  # the long-poll answers before verifiers' scoring deadline
    answers = [f"```diff\n{fix_diff}```", GARBAGE] * 2
    traces = [_rollout(task, answer) for task, answer in zip(tasks, answers, strict=True)]

    async def score_group():
        await asyncio.gather(*(task.score(trace) for task, trace in zip(tasks, traces, strict=True)))

    asyncio.run(score_group())
    rewards = [trace.rewards["reviewapp"].score for trace in traces]
    assert rewards[0] > 0.5 and rewards[0] == rewards[2]
    assert rewards[1::2] == [0.0, 0.0]  # prose without a diff: rejected, worth nothing
    assert [trace.metrics.get("reviewapp_correctness") for trace in traces] == [1.0, None, 1.0, None]
    calls = [request for request in proxy.requests if request[1] == "/api/v1/rewards/"]
    assert len(calls) == 1, "four rollouts scored together are one /rewards/ call"

    # No reward to train on (here: not finished within wait_s) is never a 0.0: the scoring fails, verifiers
    # records the trace as errored.
    monkeypatch.setenv("REVIEWAPP_WAIT_S", "0")
    pending = _rollout(tasks[0], f"```diff\n{fix_diff.replace('a + b', 'b + a')}```")
    import verifiers.v1 as vf

    with pytest.raises(vf.TaskError, match=r"reviewapp patch \d+ is (queued|running): no reward to train on"):
        asyncio.run(tasks[0].score(pending))
    assert pending.rewards.get("reviewapp") is None
