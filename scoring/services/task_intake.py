"""Writes: task registration (archives or folders, the spec, the reference), checked before anything runs."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.db import IntegrityError, transaction

from scoring import storage
from scoring.conf import pipeline_settings
from scoring.core.critics import discriminator
from scoring.core.intake.spec import SpecError, TaskSpec, parse_spec
from scoring.core.sandbox import bwrap, workspace
from scoring.core.sandbox import process as sandbox
from scoring.core.trees import pack_tree
from scoring.models import PatchStatus, Task
from scoring.services.errors import Conflict, ServiceError

log = logging.getLogger(__name__)

S = PatchStatus


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
        streams: dict[str, Any] = {}
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
