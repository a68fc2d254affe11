"""reviewapp rewards inside a verifiers environment (verifiers 0.4, the `verifiers.v1` API).

A verifiers Task declares its rewards as `@vf.reward` methods, called once per rollout (trace). ReviewappTask
is such a task: its `reviewapp` reward sends the rollout's last assistant message to the service, coalesced
with the other rollouts scoring at the same time (reviewapp_client.batcher), and records the measured subscores
as metrics. The reviewapp task name is the `reviewapp_task` field of the task data (never verifiers' own `task`,
which is a payload). The service comes from REVIEWAPP_URL and REVIEWAPP_TOKEN (REVIEWAPP_WAIT_S, default 120).

verifiers records a reward as a float: a patch with no reward to train on (failed, cancelled, withheld,
unfinished) makes the scoring raise vf.TaskError, so the trace is recorded as errored with no reward instead
of a 0.0 that would train a crash as a bad patch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import verifiers.v1 as vf
from verifiers.v1.types import content_text

from reviewapp_client.batcher import batcher_from_env
from reviewapp_client.client import CRITERIA


class ReviewappTaskData(vf.TaskData):
    """A verifiers task row that names the reviewapp task its answers are scored against."""

    reviewapp_task: str


def completion_of(trace: vf.Trace) -> str:
    """The text of the rollout's last assistant message (the answer that holds the diff)."""
    for message in reversed(trace.messages):
        if getattr(message, "role", None) == "assistant":
            return content_text(message.content)
    return ""


def scoring_deadline_s() -> float:
    """Seconds verifiers should allow a rollout's scoring: REVIEWAPP_WAIT_S plus a minute for the requests."""
    return float(os.environ.get("REVIEWAPP_WAIT_S", "120")) + 60


class ReviewappTask(vf.Task[ReviewappTaskData]):
    """A verifiers task scored by reviewapp: reward `reviewapp` in [0, 1], metrics `reviewapp_<criterion>`."""

    @vf.reward(weight=1.0)
    async def reviewapp(self, task: ReviewappTaskData, trace: vf.Trace) -> float:
        row = await batcher_from_env().ascore(task.reviewapp_task, completion_of(trace))
        for name in CRITERIA:  # verifiers metrics are floats: an unmeasured criterion is left out, not 0.0
            if row.subscores[name] is not None:
                trace.record_metric(f"reviewapp_{name}", row.subscores[name])
        trace.info["reviewapp"] = {"id": row.id, "status": row.status}
        if row.reward is None:
            raise vf.TaskError(f"reviewapp patch {row.id} is {row.status}: no reward to train on")
        return row.reward


class ReviewappTaskset(vf.Taskset[ReviewappTask]):
    """Tasks from rows (dicts or a datasets.Dataset) with a `prompt` and a reviewapp task column."""

    def __init__(
        self, rows: Iterable[Mapping[str, Any]], *, task_column: str = "task", config: vf.TasksetConfig | None = None
    ) -> None:
        super().__init__(config if config is not None else vf.TasksetConfig())
        self.rows = list(rows)
        self.task_column = task_column

    def load(self) -> Iterable[ReviewappTask]:
        for index, row in enumerate(self.rows):
            if not row.get(self.task_column):
                raise ValueError(f"row {index} has no {self.task_column!r} naming its reviewapp task")
            data = ReviewappTaskData(
                prompt=row["prompt"],
                reviewapp_task=str(row[self.task_column]),
                # An expired scoring deadline is a stop to verifiers, and the missing reward would sum to 0.0:
                # give the service's long-poll time to answer first.
                timeout=vf.TaskTimeout(scoring=scoring_deadline_s()),
            )
            yield ReviewappTask(data)
