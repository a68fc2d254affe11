"""The critic registry: the one list the pipeline, the weights, the review page and the export iterate over.

A fifth criterion is a new file in scoring/core/critics/ plus one entry here.
"""

from scoring.core.critics.base import Critic
from scoring.core.critics.correctness.critic import CorrectnessCritic
from scoring.core.critics.performance.critic import PerformanceCritic
from scoring.core.critics.security import SecurityCritic
from scoring.core.critics.style import StyleCritic

REGISTRY: tuple[Critic, ...] = (CorrectnessCritic(), StyleCritic(), PerformanceCritic(), SecurityCritic())
CRITERIA: tuple[str, ...] = tuple(critic.name for critic in REGISTRY)
BY_NAME: dict[str, Critic] = {critic.name: critic for critic in REGISTRY}
#: The criterion that gates the reward under the `gated` shaping (Critic.gates_reward): exactly one.
(GATE,) = (critic.name for critic in REGISTRY if critic.gates_reward)
