"""OpenRLHF's reward paths, reproduced from its source (0.10 / 0.11: openrlhf/utils/remote_rm_utils.py and the
rollout executors) because openrlhf itself needs deepspeed, ray and vllm and does not install on CPU:

- reward function file: loaded with importlib.util.spec_from_file_location("reward_func", path), then called
  once per rollout as reward_func([query], [prompt], [label]), many rollouts at once; a raised exception turns
  into a missing reward, and rewards are read with float() / .item() from the returned dict;
- HTTP remote reward: POST {"query": [...], "prompts": [...], "labels": [...]} with Content-Type only (no auth
  header), retried on any error, and the answer's "rewards" (then "scores", "extra_logs") read from its JSON.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from reviewapp_client.batcher import RewardBatcher
from reviewapp_client.client import RewardClient
from reviewapp_client.openrlhf import make_server

from tests.client.conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "<|im_start|>user\nFix calc.add<|im_end|>\n<|im_start|>assistant\n"
GARBAGE = "no diff, just prose"


def _load_like_openrlhf(path: Path):
    spec = importlib.util.spec_from_file_location("reward_func", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reward_func


def _scalar(value):
    """How OpenRLHF's executor reads a per-sample value (GenerationRequestExecutor._extract_scalar)."""
    if isinstance(value, list | tuple):
        return _scalar(value[0]) if value else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return value.item()


@pytest.mark.parametrize("path", ["scoring/openrlhf_reward.py", "client/reviewapp_client/openrlhf.py"])
def test_per_rollout_calls_from_openrlhf_are_coalesced_into_few_reward_requests(
    path, redis_server, tiny_task, fix_diff, live_server, client_token, flaky_proxy, monkeypatch
):
    proxy = flaky_proxy([])
    monkeypatch.setenv("REVIEWAPP_URL", proxy.url)
    monkeypatch.setenv("REVIEWAPP_TOKEN", client_token)
    monkeypatch.setenv("REVIEWAPP_WAIT_S", "0")  # no worker runs: the fixes stay queued
    reward_func = _load_like_openrlhf(ROOT / path)
    responses = [f"```diff\n{fix_diff}```" if i % 2 == 0 else GARBAGE for i in range(16)]

    def one_rollout(index: int):
        return reward_func([PROMPT + responses[index]], [PROMPT], ["tiny"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(one_rollout, range(16)))

    rewards = [_scalar(answer["rewards"]) for answer in answers]
    unscored = [_scalar(answer["extra_logs"]["reviewapp/unscored"]) for answer in answers]
    assert rewards == [0.0] * 16  # unfinished fixes and prose alike: OpenRLHF cannot hold None
    assert unscored == [1.0, 0.0] * 8  # ...but the run's logs tell the unfinished ones apart
    calls = [r for r in proxy.requests if r[1] == "/api/v1/rewards/"]
    assert len(calls) <= 3, f"16 rollouts sent as {len(calls)} /rewards/ calls"
    assert sum(len(body["completions"]) for _, _, body in calls) == 16


def test_service_down_gives_openrlhf_zero_marked_unscored_instead_of_an_exception(monkeypatch, caplog):
    monkeypatch.setenv("REVIEWAPP_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("REVIEWAPP_TOKEN", "t")
    reward_func = _load_like_openrlhf(ROOT / "scoring/openrlhf_reward.py")
    import reviewapp_client.batcher as module

    monkeypatch.setattr(module, "_batcher_for", lambda url, token, wait_s: RewardBatcher(
        RewardClient(url, token, retries=1, backoff_s=0.05), wait_s=wait_s))  # fmt: skip
    answer = reward_func([PROMPT + GARBAGE], [PROMPT], ["tiny"])
    assert (_scalar(answer["rewards"]), _scalar(answer["extra_logs"]["reviewapp/unscored"])) == (0.0, 1.0)
    assert "reviewapp reward unavailable" in caplog.text


@pytest.fixture
def openrlhf_server(live_server, client_token):
    batcher = RewardBatcher(RewardClient(live_server.url, client_token, retries=0), wait_s=0)
    server = make_server(batcher, port=0, token="s3cret")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/reward", batcher
    server.shutdown()
    server.server_close()


def test_openrlhf_http_reward_mode_answers_its_request_shape_behind_a_url_token(
    openrlhf_server, redis_server, tiny_task, fix_diff
):
    url, batcher = openrlhf_server
    headers = {"Content-Type": "application/json"}  # all OpenRLHF's request_api_wrapper sends

    def post(target: str, body):
        return requests.post(target, data=json.dumps(body), headers=headers, timeout=60)

    body = {"query": [PROMPT + GARBAGE], "prompts": [PROMPT], "labels": ["tiny"]}
    assert post(url, body).status_code == 401
    assert post(url + "?token=wrong", body).status_code == 401
    refused = post(url + "?token=s3cret", {"query": [PROMPT], "prompts": [PROMPT]})
    assert refused.status_code == 400 and "labels" in refused.json()["detail"]

    # Servers OpenRLHF shards a batch across each get a slice; many at once coalesce into few /rewards/ calls.
    before = batcher.calls
    slices = [
        {
            "query": [PROMPT + f"```diff\n{fix_diff}```", PROMPT + GARBAGE],
            "prompts": [PROMPT] * 2,
            "labels": ["tiny"] * 2,
        }
        for _ in range(6)
    ]
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda b: post(url + "?token=s3cret", b), slices))
    assert all(answer.status_code == 200 for answer in answers)
    for answer in answers:
        out = answer.json()
        assert out["rewards"] == [0.0, 0.0] and out["scores"] == out["rewards"]
        assert out["extra_logs"]["reviewapp/unscored"] == [1.0, 0.0]  # queued fix, rejected prose
    assert batcher.calls - before <= 2
