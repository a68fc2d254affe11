"""OpenRLHF reward function: pass this file to `--remote_rm_url`, with `--label_key` naming the task column.

    export REVIEWAPP_URL=http://127.0.0.1:8000 REVIEWAPP_TOKEN=...   # REVIEWAPP_WAIT_S=120 optional
    python -m openrlhf.cli.train_ppo_ray ... --remote_rm_url scoring/openrlhf_reward.py --label_key task

OpenRLHF calls reward_func(queries, prompts, labels): each query is its prompt followed by the response, and
each label here is the reviewapp task name. Importable without Django (and without torch, which it uses only
when installed).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from typing import Any

from scoring.client import CRITERIA, RewardClient, none_as_zero, zero_for_unfinished

logger = logging.getLogger(__name__)


def _client() -> RewardClient:
    """The client for REVIEWAPP_URL and REVIEWAPP_TOKEN, made once per setting."""
    missing = [name for name in ("REVIEWAPP_URL", "REVIEWAPP_TOKEN") if not os.environ.get(name)]
    if missing:
        raise RuntimeError(f"set {' and '.join(missing)} for the reviewapp reward function")
    return _client_for(os.environ["REVIEWAPP_URL"], os.environ["REVIEWAPP_TOKEN"])


@functools.lru_cache(maxsize=4)
def _client_for(url: str, token: str) -> RewardClient:
    # OpenRLHF calls a bare function many times: keep the connection pool across calls.
    return RewardClient(url, token)


def response_of(query: str, prompt: str) -> str:
    """The response part of a query (prompt + response): the text after the prompt."""
    if query.startswith(prompt):
        return query[len(prompt) :]
    at = query.find(prompt) if prompt else -1
    if at >= 0:  # a BOS token or template prefix before the prompt
        return query[at + len(prompt) :]
    # Never score the prompt's own diff (a task prompt may show one) as the response's: say so, use it all.
    logger.warning("query does not contain its prompt; scoring the whole query")
    return query


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any]) -> dict[str, Any]:
    """Rewards for a batch of OpenRLHF rollouts: {"rewards", "scores", "extra_logs": {criterion: ...}}.

    One /rewards/ call per task. Tensors cannot hold None, so a reward not finished within REVIEWAPP_WAIT_S, or
    a criterion that could not be measured, counts as 0.0 (the unfinished ones are logged as a warning).
    The values are torch tensors when torch is installed, lists of floats otherwise.
    """
    responses = [response_of(query, prompt) for query, prompt in zip(queries, prompts, strict=True)]
    tasks = [str(label).strip() for label in labels]
    wait_s = float(os.environ.get("REVIEWAPP_WAIT_S", "120"))
    answer = _client().rewards_by_task(tasks, responses, wait_s=wait_s)
    rewards = zero_for_unfinished(answer["rewards"], where="openrlhf reward_func")
    logs = {name: none_as_zero(answer["subscores"][name]) for name in CRITERIA}
    return {
        "rewards": _tensor(rewards),
        "scores": _tensor(rewards),
        "extra_logs": {k: _tensor(v) for k, v in logs.items()},
    }


def _tensor(values: list[float]) -> Any:
    try:
        import torch
    except ImportError:
        return values
    return torch.tensor(values, dtype=torch.float32)
