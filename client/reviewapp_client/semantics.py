"""What a patch's status means as a reward: the one table the service and every trainer adapter read.

| status                              | reward        | why                                                   |
|-------------------------------------|---------------|-------------------------------------------------------|
| scored, needs_review, reviewed      | final_score   | the patch was judged                                  |
| rejected                            | 0.0           | the completion held no usable diff: the policy's fault |
| failed, cancelled                   | None          | an infrastructure outcome, not the patch's            |
| queued, running (past wait_s)       | None          | not finished yet: fetch it later by its id            |
| withheld by the flag policy         | None          | not to be trained on until a reviewer has labelled it |

None means "no reward to train on": a trainer must leave the row out, never count it as 0.0 (a crashed worker
would otherwise train as a bad patch). Adapters whose library cannot hold None say what they turn it into
(UNSCORED below), in one place each.
"""

from __future__ import annotations

JUDGED = frozenset({"scored", "needs_review", "reviewed"})
UNUSABLE = frozenset({"rejected"})
INFRASTRUCTURE = frozenset({"failed", "cancelled"})
PENDING = frozenset({"queued", "running"})
FINAL = JUDGED | UNUSABLE | INFRASTRUCTURE

#: What each adapter hands its library for a None reward, where the library cannot take None.
UNSCORED = {
    "trl": "None (TRL >= 1.6 leaves the completion out of its group's baseline and gives it no advantage)",
    "verifiers": "the rollout's scoring raises vf.TaskError: the trace is recorded as errored, with no reward",
    "openrlhf": "0.0 in `rewards` and `scores`, with extra_logs `reviewapp/unscored` = 1.0 so the run shows it",
}


def reward_for(status: str, final_score: float | None, *, withheld: bool = False) -> float | None:
    """The reward a trainer gets for a patch in `status` whose current evaluation gave `final_score`.

    Judged patches give their final_score (None when correctness could not be measured), rejected ones 0.0,
    and everything else (failed, cancelled, still pending, withheld) None.
    """
    if withheld:
        return None
    if status in JUDGED:
        return final_score
    if status in UNUSABLE:
        return 0.0
    if status in INFRASTRUCTURE or status in PENDING:
        return None
    raise ValueError(f"unknown patch status {status!r}")
