"""Import tasks in bulk from a dataset: JSONL, or a Hugging Face dataset saved with `save_to_disk`.

Each row becomes a task through scoring.core.intake.dataset_tasks (the MBPP shape by default; ColumnMap renames the
columns) and is registered with the same service as any task. Safe to run twice: a row whose task name already
exists is counted as `existing` and left alone. Refused rows are counted with their reason, never fatal.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scoring.core.intake.dataset_tasks import MBPP, ColumnMap, RowRefused, draft_from_row
from scoring.core.intake.spec import SpecError, TaskSpec, parse_spec
from scoring.models import Task
from scoring.services import ServiceError, task_create_from_dirs

#: Whether this build's task spec has a `reference` field to carry the row's solution.
SPEC_TAKES_REFERENCE = any(f.name == "reference" for f in dataclasses.fields(TaskSpec))


@dataclass
class ImportSummary:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (row number, reason)

    def as_json(self) -> dict[str, Any]:
        reasons = Counter(_reason_kind(reason) for _, reason in self.refused)
        return {
            "created": len(self.created),
            "existing": len(self.existing),
            "refused": len(self.refused),
            "refused_by_reason": dict(reasons.most_common()),
            "refused_rows": [{"row": row, "reason": reason} for row, reason in self.refused[:100]],
        }


def _reason_kind(reason: str) -> str:
    """The reason without its row-specific detail, for grouping ("tests: not Python: ..." -> "tests: not Python")."""
    return reason.split(": ", 2)[0] if reason.count(": ") >= 2 else reason.split(" (", 1)[0]


def read_rows(source: Path, *, split: str | None = None) -> Iterator[Mapping[str, Any] | str]:
    """Rows of a JSONL file, or of a dataset folder written by `datasets.save_to_disk` (a DatasetDict needs
    `split`, default `train`). A JSONL line that is not JSON comes out as the string error for that row."""
    if source.is_dir():
        from datasets import DatasetDict, load_from_disk

        data = load_from_disk(str(source))
        if isinstance(data, DatasetDict):
            chosen = split or ("train" if "train" in data else next(iter(data)))
            if chosen not in data:
                raise ValueError(f"split {chosen!r} not in the dataset; it has {', '.join(data)}")
            data = data[chosen]
        yield from data
        return
    with source.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                yield f"line {number} is not JSON ({exc.msg})"


def count_rows(source: Path, *, split: str | None = None) -> int | None:
    """How many rows `read_rows` will give, for a progress bar; None when it would cost a second read."""
    if source.is_dir():
        return None
    with source.open("rb") as lines:
        return sum(1 for line in lines if line.strip())


def tasks_import(
    *,
    rows: Iterable[Mapping[str, Any] | str],
    columns: ColumnMap = MBPP,
    prefix: str = "",
    holdout: int = 1,
    user: Any = None,
    progress: Callable[[], None] | None = None,
) -> ImportSummary:
    """Register one task per row; returns what was created, what already existed and what was refused why."""
    summary = ImportSummary()
    seen: set[str] = set()
    for index, row in enumerate(rows):
        try:
            _import_row(row, index, columns, prefix, holdout, user, summary, seen)
        finally:
            if progress is not None:
                progress()
    return summary


def _import_row(row, index, columns, prefix, holdout, user, summary, seen) -> None:
    if isinstance(row, str):
        summary.refused.append((index + 1, row))
        return
    try:
        draft = draft_from_row(row, columns=columns, prefix=prefix, holdout=holdout, index=index)
    except RowRefused as exc:
        summary.refused.append((index + 1, str(exc)))
        return
    if draft.name in seen:
        summary.refused.append((index + 1, f"duplicate name {draft.name!r} in this dataset"))
        return
    seen.add(draft.name)
    if Task.objects.filter(name=draft.name).exists():
        summary.existing.append(draft.name)
        return
    with tempfile.TemporaryDirectory(prefix="reviewapp-import-") as tmp:
        folder = draft.write(Path(tmp))
        data = draft.spec()
        if SPEC_TAKES_REFERENCE:
            data["reference"] = "reference"
        try:
            spec = parse_spec(data, spec_dir=folder)
            task_create_from_dirs(spec=spec, user=user)
        except (SpecError, ServiceError) as exc:
            summary.refused.append((index + 1, f"{draft.name}: {exc}"))
            return
    summary.created.append(draft.name)
