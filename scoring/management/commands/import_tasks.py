"""python manage.py import_tasks DATASET [--columns part=column,...] [--prefix P] [--holdout N] [--split S] [--json]"""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from scoring.core.intake.dataset_tasks import ColumnMap
from scoring.task_import import count_rows, read_rows, tasks_import


class Command(BaseCommand):
    help = (
        "Register one task per row of a dataset (JSONL, or a Hugging Face dataset folder from save_to_disk). "
        "The MBPP shape by default: problem text, solution code, assert-style tests (docs/rl.md, 'Tasks in bulk'). "
        "Idempotent: tasks that exist already are left alone. Exit 0 when the dataset was read (whatever was "
        "refused), 2 on bad input."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset", type=Path, help="a .jsonl file or a save_to_disk folder")
        parser.add_argument(
            "--columns", default="", help="part=column,... (parts: " + ", ".join(ColumnMap.__dataclass_fields__) + ")"
        )
        parser.add_argument("--prefix", default="", help="prepended to each task name, e.g. mbpp-")
        parser.add_argument("--holdout", type=int, default=1, help="asserts per row held out as hidden tests")
        parser.add_argument("--split", default=None, help="which split of a DatasetDict (default: train)")
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")

    def handle(
        self, *args, dataset: Path, columns: str, prefix: str, holdout: int, split: str | None, json: bool, **options
    ) -> None:
        if not dataset.exists():
            raise CommandError(f"{dataset}: no such file or folder", returncode=2)
        if holdout < 0:
            raise CommandError("--holdout must be 0 or more", returncode=2)
        try:
            column_map = ColumnMap.parse(columns)
            rows = read_rows(dataset, split=split)
            total = count_rows(dataset, split=split)
            with tqdm(total=total, unit="row", file=sys.stderr, disable=None) as bar:
                summary = tasks_import(
                    rows=rows, columns=column_map, prefix=prefix, holdout=holdout, progress=lambda: bar.update(1)
                )
        except (ValueError, OSError) as exc:
            raise CommandError(f"{dataset}: {exc}", returncode=2) from exc
        report = summary.as_json()
        if json:
            self.stdout.write(_dumps(report))
            return
        self.stdout.write(
            f"{report['created']} created, {report['existing']} already there, {report['refused']} refused."
        )
        for reason, count in report["refused_by_reason"].items():
            self.stdout.write(f"  refused {count}: {reason}")
        for item in report["refused_rows"][:20]:
            self.stdout.write(f"  row {item['row']}: {item['reason']}")


def _dumps(data: object) -> str:
    return jsonlib.dumps(data, indent=2)
