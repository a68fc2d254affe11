"""reviewapp's trainer client: RewardClient, AsyncRewardClient, the reward semantics and the TRL adapter.

The OpenRLHF and verifiers adapters live in reviewapp_client.openrlhf and reviewapp_client.verifiers (imported
on demand: verifiers pulls its own dependencies). See docs/rl.md.
"""

from reviewapp_client.client import (
    CRITERIA,
    TRL_MIN_VERSION,
    AsyncRewardClient,
    BatchScorer,
    RewardClient,
    RewardServiceError,
    check_trl_version,
    trl_reward_func,
    trl_reward_funcs_per_criterion,
)
from reviewapp_client.semantics import UNSCORED, reward_for

__all__ = [
    "CRITERIA",
    "TRL_MIN_VERSION",
    "UNSCORED",
    "AsyncRewardClient",
    "BatchScorer",
    "RewardClient",
    "RewardServiceError",
    "check_trl_version",
    "reward_for",
    "trl_reward_func",
    "trl_reward_funcs_per_criterion",
]
