"""What the client promises without a server: importable in a trainer without Django, same criteria as the
registry, and OpenRLHF queries cut at the prompt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scoring.client import CRITERIA
from scoring.openrlhf_reward import response_of, reward_func

ROOT = Path(__file__).resolve().parents[2]


def test_client_and_openrlhf_module_import_without_django_or_the_critics():
    code = (
        "import sys, scoring.client, scoring.openrlhf_reward\n"
        "heavy = ('django', 'scoring.core.critics.registry', 'scipy', 'torch')\n"
        "loaded = sorted(m for m in heavy if m in sys.modules)\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},  # no DJANGO_SETTINGS_MODULE, nothing inherited
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_client_criteria_are_the_registry_criteria_in_order():
    from scoring.core.critics.registry import CRITERIA as REGISTRY_CRITERIA

    assert REGISTRY_CRITERIA == CRITERIA


def test_openrlhf_response_is_the_query_after_its_prompt():
    prompt = "<|user|>Fix add() in calc.\n```diff\n--- shown in the prompt\n```<|assistant|>"
    response = "```diff\n+ the answer\n```"
    assert response_of(prompt + response, prompt) == response
    assert response_of("<s>" + prompt + response, prompt) == response  # a BOS token in front
    assert response_of(response, "a prompt that is not there") == response


def test_openrlhf_reward_func_without_service_address_says_which_variable_is_missing(monkeypatch):
    monkeypatch.delenv("REVIEWAPP_URL", raising=False)
    monkeypatch.setenv("REVIEWAPP_TOKEN", "t")
    with pytest.raises(RuntimeError, match="REVIEWAPP_URL"):
        reward_func(["q"], ["q"], ["tiny"])


@pytest.mark.parametrize("old", ["0.23.1", "1.5.2"])
def test_trl_adapter_refuses_a_trl_that_would_train_a_crash_as_zero(monkeypatch, old):
    import importlib.metadata

    from scoring.client import RewardClient, trl_reward_func, trl_reward_funcs_per_criterion

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: old if name == "trl" else real(name))
    client = RewardClient("http://127.0.0.1:9", "t")
    with pytest.raises(RuntimeError, match=rf"trl {old} counts a None reward .* needs trl>=1\.6"):
        trl_reward_func(client)
    with pytest.raises(RuntimeError, match=r"needs trl>=1\.6"):
        trl_reward_funcs_per_criterion(client)
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "1.16.0" if name == "trl" else real(name))
    assert trl_reward_func(client).__name__ == "reviewapp_reward"


def test_a_batch_that_cannot_be_sent_fails_every_caller_of_that_batch():
    from concurrent.futures import wait

    from reviewapp_client.batcher import RewardBatcher

    from scoring.client import RewardClient, RewardServiceError

    batcher = RewardBatcher(RewardClient("http://127.0.0.1:9", "t", retries=0), wait_s=0, linger_s=0.2)
    futures = [batcher.submit("tiny", f"completion {i}") for i in range(5)]
    wait(futures, timeout=30)
    assert batcher.calls == 1
    for future in futures:
        with pytest.raises(RewardServiceError, match="unreachable"):
            future.result()
