"""Writes: patch intake, one at a time or in batches, with the queue's room checked and every diff validated."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from scoring import storage
from scoring.conf import pipeline_settings
from scoring.core.intake import diffcheck
from scoring.core.intake.diffcheck import DiffError
from scoring.core.intake.text import storable
from scoring.core.sandbox import workspace
from scoring.models import ACTIVE_STATUSES, Patch, PatchStatus, Task
from scoring.services.errors import Conflict, QueueFull, ServiceError
from scoring.services.lifecycle import enqueue_many, enqueue_stage, patch_transition

log = logging.getLogger(__name__)

S = PatchStatus


def diff_validate(*, task: Task, diff: str, in_process_only: bool = False) -> diffcheck.ParsedDiff | None:
    """Parse a diff and check that it applies to the task's base tree. Raises DiffError (status 400 or 413).

    The check runs in-process (libgit2) for a diff that applies; a refusal is always git's (`git apply --check`,
    in a subprocess), with git's message. See workspace.check_applies. With `in_process_only`, None means "git
    must decide": nothing was refused yet.
    """
    parsed = diffcheck.parse_diff(diff, max_bytes=settings.LIMITS["DIFF_BYTES"])
    base = workspace.base_tree(
        storage.archive_path(task.base_sha256), cache_root=pipeline_settings().cache_root, sha256=task.base_sha256
    )
    diffcheck.check_paths_exist(parsed, base)
    if not workspace.check_applies(parsed, base, in_process_only=in_process_only):
        return None
    return parsed


def _check_queue_room(client: Any, incoming: int) -> None:
    limit = settings.REVIEWAPP["MAX_QUEUED_PER_CLIENT"]
    pending = Patch.objects.filter(client=client, status__in=ACTIVE_STATUSES).count()
    if pending + incoming > limit:
        raise QueueFull(
            f"{pending} patches of yours are already queued or running (limit {limit}); retry later",
            retry_after=30,
        )


@dataclass(frozen=True)
class Submission:
    patch: Patch | None
    created: bool
    error: ServiceError | None = None


def patch_submit(
    *,
    client: Any,
    task: Task,
    diff: str,
    external_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    check_queue: bool = True,
    enqueue: bool = True,
    is_demo: bool = False,
) -> Submission:
    """Accept one patch: dedupe by external_id, validate, write the row, enqueue scoring on commit.

    Returns Submission(patch, created). Raises DiffError (400/413), Conflict (409: same external_id, other
    diff) or QueueFull (429). Safe to call twice with the same external_id: the first patch comes back.
    """
    sha = hashlib.sha256(diff.encode("utf-8", "surrogatepass")).hexdigest()
    if external_id is not None:
        existing = Patch.objects.filter(client=client, task=task, external_id=external_id).first()
        if existing is not None:
            return _same_or_conflict(existing, sha)
    if check_queue:
        _check_queue_room(client, 1)
    diff_validate(task=task, diff=diff)
    try:
        with transaction.atomic():
            patch = Patch.objects.create(
                task=task,
                client=client,
                diff=diff,
                diff_sha256=sha,
                external_id=external_id,
                metadata=dict(metadata or {}),
                is_demo=is_demo,
            )
            if enqueue:
                transaction.on_commit(lambda: enqueue_stage(patch.pk))
    except IntegrityError:
        # Another request with the same external_id won the race: answer as if it came first.
        existing = Patch.objects.get(client=client, task=task, external_id=external_id)
        return _same_or_conflict(existing, sha)
    return Submission(patch, created=True)


def _same_or_conflict(existing: Patch, sha: str) -> Submission:
    if existing.diff_sha256 != sha:
        raise Conflict(
            f"external_id {existing.external_id!r} was already used for another diff (patch {existing.pk})",
            patch_id=existing.pk,
        )
    return Submission(existing, created=False)


def patch_submit_many(*, client: Any, items: Iterable[Mapping[str, Any]], tasks: Mapping[str, Task]) -> list:
    """Submit a batch; one Submission per item, in order. A bad item gets its error, the others go on.

    The fast path of intake: diffs are validated in-process, the new rows are written in one transaction, and
    one fan-out message enqueues them all after the commit. Most diffs are checked by libgit2, which holds the
    GIL, so they are checked one after the other (threads made a batch of 1000 about 1.4x slower). Those that
    `git apply --check` must decide (refusals, plain diffs libgit2 cannot read) run in a subprocess each, in
    parallel threads (about 1.8x the throughput of one thread on a batch of those).
    """
    items = list(items)
    _check_queue_room(client, len(items))
    existing = _existing_by_external_id(client, items, tasks)
    checked = [_validate_item(item, tasks, in_process_only=True) for item in items]
    for_git = [index for index, outcome in enumerate(checked) if outcome is None]
    if for_git:
        with ThreadPoolExecutor(max_workers=4) as pool:
            decided = pool.map(lambda index: _validate_item(items[index], tasks), for_git)
            for index, outcome in zip(for_git, decided, strict=True):
                checked[index] = outcome
    out: list[Submission | None] = [None] * len(items)
    new_rows: dict[tuple[int, str | None], tuple[int, Patch]] = {}
    for index, (item, outcome) in enumerate(zip(items, checked, strict=True)):
        if isinstance(outcome, ServiceError):
            out[index] = Submission(None, False, outcome)
            continue
        assert outcome is not None  # every item git had to decide was decided above
        task, sha = outcome
        external_id = item.get("external_id")
        first = existing.get((task.pk, external_id)) if external_id is not None else None
        if first is None and external_id is not None and (task.pk, external_id) in new_rows:
            first = new_rows[(task.pk, external_id)][1]
        if first is not None:
            try:
                out[index] = _same_or_conflict(first, sha)
            except Conflict as exc:
                out[index] = Submission(None, False, exc)
            continue
        patch = Patch(
            task=task, client=client, diff=item["diff"], diff_sha256=sha, external_id=external_id,
            metadata=dict(item.get("metadata") or {}),
        )  # fmt: skip
        new_rows[(task.pk, external_id if external_id is not None else f"#{index}")] = (index, patch)
    try:
        with transaction.atomic():
            created = Patch.objects.bulk_create([patch for _, patch in new_rows.values()])
            ids = [patch.pk for patch in created]
            transaction.on_commit(lambda: enqueue_many(ids))
    except IntegrityError:
        # A concurrent request used one of these external_ids first: take the careful path, item by item.
        return [_submit_one(client, item, tasks) for item in items]
    for index, patch in new_rows.values():
        out[index] = Submission(patch, created=True)
    return out


def _existing_by_external_id(client: Any, items: list, tasks: Mapping[str, Task]) -> dict[tuple[int, str], Patch]:
    """Patches of this client already stored under the batch's external_ids, by (task id, external_id)."""
    keys = [item.get("external_id") for item in items if item.get("external_id") is not None]
    if not keys:
        return {}
    rows = Patch.objects.filter(client=client, task__in=list(tasks.values()), external_id__in=keys)
    return {(row.task_id, row.external_id): row for row in rows if row.external_id is not None}


def _validate_item(
    item: Mapping[str, Any], tasks: Mapping[str, Task], *, in_process_only: bool = False
) -> tuple[Task, str] | ServiceError | None:
    """(task, diff sha256) for a usable item, or the error that refuses it; None: git must decide (see
    diff_validate's `in_process_only`). Runs in the request's thread or in a worker thread."""
    task = tasks.get(item["task"])
    if task is None:
        return ServiceError(f"unknown task {item['task']!r}", status=404)
    try:
        parsed = diff_validate(task=task, diff=item["diff"], in_process_only=in_process_only)
    except DiffError as exc:
        return ServiceError(str(exc), status=exc.status)
    if parsed is None:
        return None
    return task, parsed.sha256  # the diff's UTF-8 digest, as patch_submit computes it


def _submit_one(client: Any, item: Mapping[str, Any], tasks: Mapping[str, Task]) -> Submission:
    task = tasks.get(item["task"])
    if task is None:
        return Submission(None, False, ServiceError(f"unknown task {item['task']!r}", status=404))
    try:
        return patch_submit(
            client=client,
            task=task,
            diff=item["diff"],
            external_id=item.get("external_id"),
            metadata=item.get("metadata"),
            check_queue=False,
        )
    except DiffError as exc:
        return Submission(None, False, ServiceError(str(exc), status=exc.status))
    except ServiceError as exc:
        return Submission(None, False, exc)


def patch_reject(*, client: Any, task: Task, diff: str, external_id: str | None, reason: str) -> Patch:
    """Store a completion whose diff cannot be used as `rejected` (reward 0.0): a normal RL outcome."""
    sha = hashlib.sha256(diff.encode("utf-8", "surrogatepass")).hexdigest()
    if external_id is not None:
        existing = Patch.objects.filter(client=client, task=task, external_id=external_id).first()
        if existing is not None:
            return existing
    return Patch.objects.create(
        task=task,
        client=client,
        diff=storable(diff),
        diff_sha256=sha,
        external_id=external_id,
        status=S.REJECTED,
        reason=storable(reason[:2000]),
        finished_at=timezone.now(),
    )


def rewards_submit(*, client: Any, task: Task, completions: list[Any], external_ids: list[str | None]) -> list[int]:
    """Store every completion as a patch (rejected with reward 0.0 when its diff is unusable); ids in order.

    Raises QueueFull before writing anything, and Conflict when an external_id was used for another diff.
    """
    known = set(
        Patch.objects.filter(client=client, task=task, external_id__in=[e for e in external_ids if e]).values_list(
            "external_id", flat=True
        )
    )
    # A retried batch finds its first patches: only the new ones count against the queue limit.
    _check_queue_room(client, sum(1 for e in external_ids if e is None or e not in known))
    ids = []
    for completion, external_id in zip(completions, external_ids, strict=True):
        diff = diffcheck.diff_from_completion(completion)
        if diff is None:
            text = completion if isinstance(completion, str) else json.dumps(completion)
            patch = patch_reject(
                client=client,
                task=task,
                diff=text,
                external_id=external_id,
                reason="no diff in the completion",
            )
        else:
            try:
                submitted = patch_submit(
                    client=client, task=task, diff=diff, external_id=external_id, check_queue=False
                ).patch
                assert submitted is not None  # patch_submit raises rather than return no patch
                patch = submitted
            except DiffError as exc:
                patch = patch_reject(
                    client=client, task=task, diff=diff, external_id=external_id, reason=f"diff: {exc}"
                )
        ids.append(patch.pk)
    return ids


def patch_cancel(*, patch: Patch) -> bool:
    """Cancel a queued patch. False when it already left the queue."""
    return patch_transition(patch_id=patch.pk, source=(S.QUEUED,), target=S.CANCELLED, finished_at=timezone.now())
