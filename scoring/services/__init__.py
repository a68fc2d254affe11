"""Writes, one module per concern; every public name is listed here, so `from scoring import services` reads
`services.patch_submit(...)` wherever it is used.

- errors: what a service raises (a message a user can act on);
- task_intake: task registration;
- patches: patch intake, single and batched;
- lifecycle: the status machine (compare-and-set), the stages, the Evaluation;
- evaluations: stored evaluations rebuilt under a weight profile;
- housekeeping: the reconciler and the pruning of old evidence.
"""

from scoring.services.errors import Conflict, QueueFull, ServiceError
from scoring.services.evaluations import current_evaluations, queue_move, rebuild
from scoring.services.housekeeping import prune_evidence, reconcile
from scoring.services.lifecycle import (
    TRANSITIONS,
    confidence_fields,
    enqueue_many,
    enqueue_stage,
    evaluation_fields,
    next_stage,
    patch_claim,
    patch_fail,
    patch_finalize,
    patch_handoff,
    patch_release,
    patch_score_inline,
    patch_transition,
    stage_advance,
    stage_execute,
    stage_record,
)
from scoring.services.patches import (
    Submission,
    diff_validate,
    patch_cancel,
    patch_reject,
    patch_submit,
    patch_submit_many,
    rewards_submit,
)
from scoring.services.task_intake import task_create, task_create_from_dirs, task_spec

__all__ = [
    "TRANSITIONS",
    "Conflict",
    "QueueFull",
    "ServiceError",
    "Submission",
    "confidence_fields",
    "current_evaluations",
    "diff_validate",
    "enqueue_many",
    "enqueue_stage",
    "evaluation_fields",
    "next_stage",
    "patch_cancel",
    "patch_claim",
    "patch_fail",
    "patch_finalize",
    "patch_handoff",
    "patch_reject",
    "patch_release",
    "patch_score_inline",
    "patch_submit",
    "patch_submit_many",
    "patch_transition",
    "prune_evidence",
    "queue_move",
    "rebuild",
    "reconcile",
    "rewards_submit",
    "stage_advance",
    "stage_execute",
    "stage_record",
    "task_create",
    "task_create_from_dirs",
    "task_spec",
]
