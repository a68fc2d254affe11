"""Writes: task registration, patch intake, the status machine, stage results and evaluations.

Every status change is a compare-and-set (`UPDATE ... WHERE status = ...`), portable to SQLite and PostgreSQL,
so two workers can never both move the same patch.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import tempfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from scoring import affinity, notify, queueing, selectors, signals, storage
from scoring.conf import pipeline_settings
from scoring.core.aggregate.route import Route, in_doubt
from scoring.core.critics import discriminator
from scoring.core.critics.registry import BY_NAME, REGISTRY
from scoring.core.intake import diffcheck
from scoring.core.intake.diffcheck import DiffError
from scoring.core.intake.spec import SpecError, TaskSpec, parse_spec
from scoring.core.intake.text import storable
from scoring.core.pipeline import PIPELINE_VERSION, build_result, run_stage, stages, tool_versions
from scoring.core.sandbox import bwrap, workspace
from scoring.core.sandbox import process as sandbox
from scoring.core.trees import pack_tree
from scoring.core.types import CriticResult, PipelineSettings, Weights
from scoring.models import Evaluation, Patch, PatchStatus, StageResult, Task, WeightProfile

log = logging.getLogger(__name__)

S = PatchStatus
#: The status machine of docs/contract.md: from -> allowed targets.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED, S.FAILED}),
    S.RUNNING: frozenset({S.QUEUED, S.SCORED, S.NEEDS_REVIEW, S.FAILED}),
    S.SCORED: frozenset({S.NEEDS_REVIEW}),
    S.NEEDS_REVIEW: frozenset({S.SCORED, S.REVIEWED}),
}


class ServiceError(Exception):
    """A request the service refuses, with the HTTP status that says why."""

    status = 400

    def __init__(self, message: str, *, status: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        self.extra = extra


class Conflict(ServiceError):
    status = 409


class QueueFull(ServiceError):
    status = 429


# --- tasks ------------------------------------------------------------------------------------------------


def task_create(
    *,
    spec_data: Mapping[str, Any] | str | bytes,
    repo: BinaryIO,
    hidden_tests: BinaryIO | None,
    user: Any,
    is_demo: bool = False,
    shared: bool = False,
    reference: BinaryIO | None = None,
) -> Task:
    """Register a task from its spec (API form) and uploaded archives. Raises ServiceError on bad input.

    The archives are stored by sha256 and extracted once into the base-tree cache right away, so a hostile
    archive is refused at the door instead of failing every patch later. A `reference` (a diff against the base,
    or a .tar.gz / .zip of files) must apply and pass the visible tests, in the sandbox, before the task exists.
    """
    spec_data, spec_shared = _split_shared(spec_data)
    try:
        spec = parse_spec(spec_data, api=True)
    except SpecError as exc:
        raise ServiceError(f"spec: {exc}") from exc
    if Task.objects.filter(name=spec.name).exists():
        raise Conflict(f"a task named {spec.name!r} already exists")
    max_bytes = settings.LIMITS["ARCHIVE_BYTES"]
    shas = {}
    for field, stream in (("repo", repo), ("hidden_tests", hidden_tests)):
        if stream is None:
            continue
        try:
            sha = storage.store_archive(stream, max_bytes=max_bytes)
            workspace.base_tree(
                storage.archive_path(sha),
                cache_root=pipeline_settings().cache_root,
                strip_root=field == "repo",  # hidden tests overlay the tree as laid out
            )
        except ValueError as exc:  # ArchiveError is a ValueError too
            raise ServiceError(f"{field}: {exc}", status=413 if "larger" in str(exc) else 400) from exc
        shas[field] = sha
    if reference is not None:
        shas["reference"] = _reference_store(spec=spec, reference=reference, base_sha=shas["repo"])
    try:
        with transaction.atomic():
            return Task.objects.create(
                name=spec.name,
                spec=spec.to_json(),
                base_sha256=shas["repo"],
                hidden_sha256=shas.get("hidden_tests", ""),
                reference_sha256=shas.get("reference", ""),
                created_by=user if getattr(user, "is_authenticated", False) else None,
                shared=shared or spec_shared,
                is_demo=is_demo,
            )
    except IntegrityError as exc:
        raise Conflict(f"a task named {spec.name!r} already exists") from exc


def _reference_store(*, spec: TaskSpec, reference: BinaryIO, base_sha: str) -> str:
    """Store an uploaded reference and check it against the base in the sandbox; its sha256, or ServiceError."""
    conf = pipeline_settings()
    try:
        sha = storage.store_archive(reference, max_bytes=settings.LIMITS["ARCHIVE_BYTES"])
    except ValueError as exc:
        raise ServiceError(f"reference: {exc}", status=413) from exc
    base_dir = workspace.base_tree(storage.archive_path(base_sha), cache_root=conf.cache_root)
    try:
        discriminator.check_reference(
            spec=spec,
            reference_path=storage.archive_path(sha),
            base_dir=base_dir,
            settings=conf,
            run_command=functools.partial(sandbox.run, allow_unsandboxed=conf.allow_unsandboxed),
        )
    except discriminator.ReferenceError as exc:
        raise ServiceError(f"reference: {exc}") from exc
    except bwrap.SandboxUnavailable as exc:
        raise ServiceError(f"reference: cannot be checked now: {exc}", status=503) from exc
    return sha


def task_spec(task: Task) -> TaskSpec:
    """The spec a task is scored with: its stored form, plus the local path of its stored reference."""
    spec = parse_spec(task.spec, api=True)
    if task.reference_sha256:
        spec = dataclasses.replace(spec, reference=storage.archive_path(task.reference_sha256))
    return spec


def _split_shared(spec_data: Mapping[str, Any] | str | bytes) -> tuple[Mapping[str, Any] | str | bytes, bool]:
    """(the spec without its "shared" key, that key's value). Sharing is the service's business, not the pipeline's,
    so scoring.core.intake.spec never sees the key. Raises ServiceError when it is not true or false; a spec that is not
    a JSON object goes on unchanged, for parse_spec to name what is wrong with it."""
    data: Any = spec_data
    if isinstance(spec_data, str | bytes | bytearray):
        try:
            data = json.loads(spec_data)
        except (ValueError, RecursionError):
            return spec_data, False
    if not isinstance(data, Mapping) or "shared" not in data:
        return spec_data, False
    shared = data["shared"]
    if not isinstance(shared, bool):
        raise ServiceError("spec: shared: must be true or false")
    return {k: v for k, v in data.items() if k != "shared"}, shared


def task_create_from_dirs(*, spec: TaskSpec, user: Any = None, is_demo: bool = False, shared: bool = False) -> Task:
    """Register a task from a CLI spec whose repo / hidden_tests / reference are folders or files on this machine."""
    with tempfile.TemporaryDirectory() as tmp:
        streams = {}
        for field in ("repo", "hidden_tests", "reference"):
            source: Path | None = getattr(spec, field)
            if source is None:
                streams[field] = None
                continue
            if source.is_dir():
                source = pack_tree(source, Path(tmp) / f"{field}.tar.gz")
            streams[field] = open(source, "rb")  # noqa: SIM115 - closed below
        try:
            return task_create(
                spec_data=spec.to_json(),
                repo=streams["repo"],
                hidden_tests=streams["hidden_tests"],
                user=user,
                is_demo=is_demo,
                shared=shared or spec.shared,
                reference=streams["reference"],
            )
        finally:
            for stream in streams.values():
                if stream is not None:
                    stream.close()


# --- patch intake -----------------------------------------------------------------------------------------


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
    pending = Patch.objects.filter(client=client, status__in=[S.QUEUED, S.RUNNING]).count()
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
    return {(row.task_id, row.external_id): row for row in rows}


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
                patch = patch_submit(
                    client=client, task=task, diff=diff, external_id=external_id, check_queue=False
                ).patch
            except DiffError as exc:
                patch = patch_reject(
                    client=client, task=task, diff=diff, external_id=external_id, reason=f"diff: {exc}"
                )
        ids.append(patch.pk)
    return ids


def patch_cancel(*, patch: Patch) -> bool:
    """Cancel a queued patch. False when it already left the queue."""
    return patch_transition(patch_id=patch.pk, source=(S.QUEUED,), target=S.CANCELLED, finished_at=timezone.now())


# --- the status machine -----------------------------------------------------------------------------------


def patch_transition(*, patch_id: int, source: Iterable[str], target: str, extra: Q | None = None, **fields) -> bool:
    """Move a patch from one of `source` to `target` if it is still there. True if this call won."""
    source = tuple(source)
    for state in source:
        if target not in TRANSITIONS.get(state, ()):
            raise ValueError(f"{state} -> {target} is not a status transition")
    condition = Q(pk=patch_id, status__in=source)
    if extra is not None:
        condition &= extra
    won = Patch.objects.filter(condition).update(status=target, updated_at=timezone.now(), **fields) == 1
    if won and target in selectors.DONE:
        # Wake the /rewards/ calls waiting for this patch, once the status they will read is committed.
        transaction.on_commit(lambda: notify.patch_done(patch_id))
    return won


def patch_claim(*, patch_id: int, token: str, lease_s: float, stage: str) -> Patch | None:
    """Take the lease on a patch to run one stage. None when someone else holds it or it is done.

    Claimable: queued; running with no live lease; or running under this same delivery (`token`, the Celery
    task id: a redelivery after the worker died). Every claim but a clean hand-over between stages counts an
    attempt; past the cap the patch fails with the last reason, so a poison pill cannot loop forever.
    """
    patch = Patch.objects.filter(pk=patch_id).first()
    if patch is None or patch.status not in (S.QUEUED, S.RUNNING):
        return None
    now = timezone.now()
    handoff = patch.status == S.RUNNING and patch.lease_until is None and patch.next_stage == stage
    cap = settings.REVIEWAPP["MAX_ATTEMPTS"]
    if not handoff and patch.attempts >= cap:
        patch_fail(
            patch_id=patch_id,
            reason=f"gave up after {patch.attempts} attempts: {patch.reason or 'worker lost'}",
        )
        return None
    free = Q(status=S.QUEUED) | Q(status=S.RUNNING) & (
        Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(run_token=token)
    )
    attempts = patch.attempts if handoff else patch.attempts + 1
    won = Patch.objects.filter(Q(pk=patch_id, attempts=patch.attempts, updated_at=patch.updated_at) & free).update(
        status=S.RUNNING,
        lease_until=now + timedelta(seconds=lease_s),
        attempts=attempts,
        run_token=token,
        next_stage="",
        updated_at=now,
    )
    if won != 1:
        return None
    patch.refresh_from_db()
    return patch


def patch_handoff(*, patch: Patch, stage: str) -> None:
    """End this stage's lease and mark `stage` as next, so its claim does not count as a retry."""
    Patch.objects.filter(pk=patch.pk, status=S.RUNNING).update(
        lease_until=None, next_stage=stage, updated_at=timezone.now()
    )


def patch_release(*, patch: Patch, reason: str) -> None:
    """Give the lease back after an internal failure so the reconciler retries it (attempts already counted)."""
    Patch.objects.filter(pk=patch.pk, status=S.RUNNING).update(
        status=S.QUEUED, lease_until=None, reason=reason[:2000], updated_at=timezone.now()
    )


def patch_fail(*, patch_id: int, reason: str) -> bool:
    return patch_transition(
        patch_id=patch_id,
        source=(S.QUEUED, S.RUNNING),
        target=S.FAILED,
        reason=reason[:2000],
        lease_until=None,
        finished_at=timezone.now(),
    )


def stage_record(*, patch: Patch, stage: str, results: Mapping[str, CriticResult], meta: Mapping[str, Any]) -> None:
    """Store one stage's results; a second call for the same stage and version keeps the first."""
    StageResult.objects.get_or_create(
        patch=patch,
        stage=stage,
        pipeline_version=PIPELINE_VERSION,
        defaults={"results": {n: r.to_json() for n, r in results.items()}, "meta": dict(meta)},
    )


def stage_execute(*, patch: Patch, stage: str, analyser: Any = None) -> None:
    """Run one stage of the pipeline on a patch and store its results. Call while holding the patch's lease.

    Raises SandboxUnavailable or an internal error; whatever the patch itself does ends up in the results.
    """
    task = patch.task
    # The stages already stored, and the active profile's shaping: the bench stage skips a benchmark that cannot
    # move the reward (a correctness of 0 under a gated profile).
    prior = {
        name: CriticResult.from_json(name, data)
        for row in StageResult.objects.filter(patch=patch, pipeline_version=PIPELINE_VERSION).exclude(stage=stage)
        for name, data in row.results.items()
    }
    outcome = run_stage(
        critics=stages(REGISTRY)[stage],
        spec=task_spec(task),
        diff=diffcheck.parse_diff(patch.diff, max_bytes=len(patch.diff.encode("utf-8", "surrogatepass")) + 1),
        base_archive=storage.archive_path(task.base_sha256),
        hidden_archive=storage.archive_path(task.hidden_sha256) if task.hidden_sha256 else None,
        settings=pipeline_settings(),
        analyser=analyser,
        prior=prior,
        shaping=selectors.active_weights()[1].shaping,
    )
    stage_record(
        patch=patch,
        stage=stage,
        results=outcome.results,
        meta={"timings_s": outcome.timings_s, "sandbox": outcome.sandbox, "tools": tool_versions()},
    )


def patch_score_inline(*, patch: Patch, analyser: Any = None) -> bool:
    """Score a queued patch in this process, every stage in turn, exactly as the workers would (the demo).

    False when a worker holds the patch.
    """
    stage = next_stage(patch)
    while stage is not None:
        claimed = patch_claim(patch_id=patch.pk, token=f"inline-{patch.pk}", lease_s=3600, stage=stage)
        if claimed is None:
            return False
        stage_execute(patch=claimed, stage=stage, analyser=analyser)
        stage = next_stage(claimed)
        if stage is not None:
            patch_handoff(patch=claimed, stage=stage)
    patch_finalize(patch=patch)
    return True


def next_stage(patch: Patch) -> str | None:
    """The first stage (in registry order) that has no stored result for this pipeline version."""
    done = set(
        StageResult.objects.filter(patch=patch, pipeline_version=PIPELINE_VERSION).values_list("stage", flat=True)
    )
    return next((stage for stage in stages(REGISTRY) if stage not in done), None)


def enqueue_many(patch_ids: list[int]) -> None:
    """Enqueue the first stage of many patches with one message; a worker fans it out (scoring.tasks)."""
    if not patch_ids:
        return
    try:
        queueing.send(queueing.ENQUEUE_PATCHES, patch_ids, queue="score")
    except Exception:  # a dead broker must not lose the rows: the reconciler enqueues them later
        log.warning("could not enqueue %d patches; the reconciler will retry", len(patch_ids), exc_info=True)


def enqueue_stage(patch_id: int, stage: str | None = None) -> None:
    """Send a patch's next stage to its queue. A broker outage is logged, not raised: the row is safe, and the
    reconciler enqueues it again once the broker is back."""
    stage = stage or next(iter(stages(REGISTRY)))
    queue = stage
    if stage == "exec":  # a task's patches go to the worker that has the task warm (scoring.affinity)
        task_id = Patch.objects.filter(pk=patch_id).values_list("task_id", flat=True).first()
        queue = affinity.exec_queue(task_id) if task_id is not None else stage
    try:
        queueing.send(queueing.RUN_STAGE, patch_id, stage, queue=queue)
    except Exception:  # kombu raises many types for a dead broker; none of them may lose the patch
        log.warning("could not enqueue patch %s (%s); the reconciler will retry", patch_id, stage, exc_info=True)


def patch_finalize(*, patch: Patch) -> Evaluation:
    """Aggregate the stored stage results into the Evaluation and route the patch. Safe to call twice."""
    rows = StageResult.objects.filter(patch=patch, pipeline_version=PIPELINE_VERSION)
    results: dict[str, CriticResult] = {}
    meta: dict[str, Any] = {"timings_s": {}, "sandbox": "bwrap"}
    for row in rows:
        results.update({n: CriticResult.from_json(n, data) for n, data in row.results.items()})
        meta["timings_s"].update(row.meta.get("timings_s", {}))
        if row.meta.get("sandbox") == "unsandboxed":
            meta["sandbox"] = "unsandboxed"
        meta["tools"] = row.meta.get("tools", {})
    meta.update(pipeline_version=PIPELINE_VERSION, task_sha256=patch.task.base_sha256)
    profile, weights = selectors.active_weights()
    result = build_result(
        task_name=patch.task.name,
        results=results,
        weights=weights,
        settings=pipeline_settings(),
        audit_key=patch.diff_sha256,
        meta=meta,
    )
    with transaction.atomic():
        evaluation, _ = Evaluation.objects.get_or_create(
            patch=patch,
            pipeline_version=PIPELINE_VERSION,
            defaults=evaluation_fields(result, profile),
        )
        target = S.SCORED if evaluation.route == Route.AUTO else S.NEEDS_REVIEW
        patch_transition(
            patch_id=patch.pk,
            source=(S.RUNNING,),
            target=target,
            lease_until=None,
            finished_at=timezone.now(),
        )
    # The layers above hear of it (the learned critic, off the reward path); none of them may fail scoring.
    for receiver, error in signals.patch_finalized.send_robust(sender=Evaluation, patch_id=patch.pk):
        if isinstance(error, Exception):
            log.warning("patch_finalized receiver %s failed for patch %s", receiver, patch.pk, exc_info=error)
    return evaluation


def evaluation_fields(result: Mapping[str, Any], profile: WeightProfile) -> dict[str, Any]:
    """The columns of an Evaluation for a built Result."""
    return {
        "subscores": result["subscores"],
        "final_score": result["final_score"],
        "weight_profile": profile,
        "route": result["route"],
        "flags": result["flags"],
        "comments": result["comments"],
        "meta": result["meta"],
        **confidence_fields(result["subscores"]),
    }


def confidence_fields(subscores: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The review queue's columns for stored subscores: the lowest measured confidence, and the criteria in doubt."""
    results = {name: CriticResult.from_json(name, data) for name, data in subscores.items()}
    measured = [r.confidence for r in results.values() if r.score is not None]
    return {
        "min_confidence": min(measured, default=0.0),
        "doubt": list(in_doubt(results, pipeline_settings().heal_confidence_threshold)),
    }


# --- housekeeping -----------------------------------------------------------------------------------------


def reconcile(*, now=None) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Re-enqueue patches whose message was lost or whose worker died; fail those past the attempt cap.

    Runs from celery beat on one host. Enqueuing twice is harmless: only one delivery wins the claim.
    """
    now = now or timezone.now()
    stuck_before = now - timedelta(seconds=settings.REVIEWAPP["STUCK_AFTER_S"])
    counts = {"requeued": 0, "failed": 0}
    stale = Patch.objects.filter(
        Q(status=S.QUEUED, updated_at__lt=stuck_before)
        | Q(status=S.RUNNING, lease_until__lt=now)
        | Q(status=S.RUNNING, lease_until__isnull=True, updated_at__lt=stuck_before)
    ).only("pk", "attempts", "reason")[:1000]
    cap = settings.REVIEWAPP["MAX_ATTEMPTS"]
    for patch in stale:
        if patch.attempts >= cap:
            counts["failed"] += patch_fail(
                patch_id=patch.pk,
                reason=f"gave up after {patch.attempts} attempts: {patch.reason or 'worker lost'}",
            )
            continue
        Patch.objects.filter(pk=patch.pk).update(updated_at=now)
        enqueue_stage(patch.pk, next_stage(patch))
        counts["requeued"] += 1
    return counts


def prune_evidence(*, now=None) -> int:  # type: ignore[no-untyped-def]
    """Drop bulky evidence (test output, findings) older than the retention; scores and rationale stay."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.REVIEWAPP["RETENTION_DAYS"])
    pruned = 0
    for evaluation in Evaluation.objects.filter(created_at__lt=cutoff, meta__evidence_pruned__isnull=True):
        for sub in evaluation.subscores.values():
            sub["evidence"] = {"pruned": True}
        evaluation.meta["evidence_pruned"] = now.isoformat()
        evaluation.save(update_fields=["subscores", "meta", "updated_at"])
        pruned += 1
    StageResult.objects.filter(created_at__lt=cutoff).delete()
    return pruned


def queue_move(status: str, route: str, *, held: bool) -> str | None:
    """The status a patch moves to under a new route, or None: only scored <-> needs_review (docs/contract.md).

    A patch enters the queue when its route is no longer `auto`; it leaves only when nobody holds it (a live
    claim or any label). Reviewed, failed and every other status stay where they are.
    """
    if status == S.SCORED and route != Route.AUTO:
        return S.NEEDS_REVIEW
    if status == S.NEEDS_REVIEW and route == Route.AUTO and not held:
        return S.SCORED
    return None


def current_evaluations() -> QuerySet[Evaluation]:
    """Evaluations of the current pipeline version, with what re-building them needs."""
    return Evaluation.objects.filter(pipeline_version=PIPELINE_VERSION).select_related("patch__task")


def rebuild(
    evaluation: Evaluation, weights: Weights, settings: PipelineSettings, *, held: bool = False
) -> dict[str, Any]:
    """The Result of a stored Evaluation under `weights`: the scoring path itself, run on stored subscores (and the
    learned critic's view stored in its meta). `held`: a reviewer holds the patch, so it stays in the queue."""
    results = {
        name: CriticResult.from_json(name, data) for name, data in evaluation.subscores.items() if name in BY_NAME
    }
    return build_result(
        task_name=evaluation.patch.task.name,
        results=results,
        weights=weights,
        settings=settings,
        audit_key=evaluation.patch.diff_sha256,
        meta=evaluation.meta,
        held=held,
    )
