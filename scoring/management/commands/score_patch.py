"""python manage.py score_patch --task TASK.json --patch PATCH.diff [--json]

Scores one patch synchronously with the real pipeline: no server, no database. Exit 0 when scored (whatever the
score), 2 on bad input, 1 on an internal failure.
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.conf import pipeline_settings
from scoring.core import pipeline
from scoring.core.analysis.analyser import Analyser
from scoring.core.critics import discriminator
from scoring.core.intake.archive import ArchiveError, sha256_file
from scoring.core.intake.diffcheck import DiffError, check_paths_exist, parse_diff
from scoring.core.intake.spec import SpecError, parse_spec
from scoring.core.sandbox import process as sandbox
from scoring.core.sandbox import workspace
from scoring.core.sandbox.bwrap import SandboxUnavailable
from scoring.core.trees import pack_tree


def _as_archive(source: Path | None, dest: Path) -> Path | None:
    if source is None:
        return None
    return pack_tree(source, dest) if source.is_dir() else source


class Command(BaseCommand):
    help = "Score one patch against a task spec with the real pipeline, without a server or a database."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--task", required=True, type=Path, help="the task spec (JSON file)")
        parser.add_argument("--patch", required=True, type=Path, help="the unified diff to score")
        parser.add_argument("--json", action="store_true", help="print the Result as JSON")

    def handle(self, *args, task: Path, patch: Path, **options) -> None:
        settings = pipeline_settings()
        try:
            spec = parse_spec(_read(task, "task spec"), spec_dir=task.resolve().parent)
            diff = parse_diff(_read(patch, "patch"))
        except (SpecError, DiffError) as exc:
            raise CommandError(str(exc), returncode=2) from exc
        with tempfile.TemporaryDirectory() as tmp:
            try:
                assert spec.repo is not None  # parse_spec requires "repo" of a CLI spec
                base_archive = pack_tree(spec.repo, Path(tmp) / "repo.tar.gz") if spec.repo.is_dir() else spec.repo
                hidden_archive = _as_archive(spec.hidden_tests, Path(tmp) / "hidden.tar.gz")
                base = workspace.base_tree(base_archive, cache_root=settings.cache_root)
                check_paths_exist(diff, base)
                workspace.check_applies(diff, base)
                if spec.reference is not None:
                    discriminator.check_reference(
                        spec=spec,
                        reference_path=spec.reference,
                        base_dir=base,
                        settings=settings,
                        run_command=functools.partial(sandbox.run, allow_unsandboxed=settings.allow_unsandboxed),
                    )
            except discriminator.ReferenceError as exc:
                raise CommandError(f"reference: {exc}", returncode=2) from exc
            except (ArchiveError, DiffError, OSError) as exc:
                raise CommandError(str(exc), returncode=2) from exc
            except SandboxUnavailable as exc:
                raise CommandError(str(exc), returncode=1) from exc
            try:
                with Analyser(
                    recycle_after=settings.analyser_recycle_after, timeout_s=settings.analyser_timeout_s
                ) as analyser:
                    result = pipeline.score(
                        spec=spec,
                        diff=diff,
                        base_archive=base_archive,
                        hidden_archive=hidden_archive,
                        settings=settings,
                        analyser=analyser,
                        task_sha256=sha256_file(base_archive),
                    )
            except SandboxUnavailable as exc:
                raise CommandError(str(exc), returncode=1) from exc
        status = "scored" if result["route"] == "auto" else "needs_review"
        result = {"task": result.pop("task"), "external_id": None, "status": status, **result, "human": None}
        self.stdout.write(json.dumps(result, indent=2) if options["json"] else summary(result))


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read the {what} {path}: {exc}", returncode=2) from exc


def summary(result: dict[str, Any]) -> str:
    """A readable account of a Result, for people at a terminal."""
    final = result["final_score"]
    lines = [
        f"Task {result['task']}: reward {'n/a' if final is None else f'{final:.2f}'}, "
        f"route {result['route']} ({result['status']})",
    ]
    if result["flags"]:
        lines.append(f"Flags: {', '.join(result['flags'])}")
    for name, sub in result["subscores"].items():
        score = "null" if sub["score"] is None else f"{sub['score']:.2f}"
        lines.append(f"\n{name}: {score} (confidence {sub['confidence']:.2f})")
        lines.extend(f"  {step}" for step in sub["rationale"])
    lines.append(f"\n{result['comments']}")
    return "\n".join(lines)
