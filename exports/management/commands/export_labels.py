"""python manage.py export_labels --format sft|pairwise|raw|raw-safe|discriminator --out PATH [--include-demo]

Writes JSONL with a `split` field on every row, plus PATH.manifest.json (docs/exports.md). Exit 0 when written,
2 on bad input (with a message), 1 on an internal failure.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from tqdm import tqdm

from exports.services import DEFAULT_MIN_MARGIN, FORMATS, ExportError, export_labels, manifest_path


def parse_cutoff(value: str | None) -> datetime | None:
    """An ISO 8601 moment (UTC when it names no zone); None for "now". Raises CommandError (exit 2) if bad."""
    if not value:
        return None
    try:
        moment = parse_datetime(value)
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(f"--cutoff {value!r} is not an ISO 8601 date and time (2025-06-01T12:00:00Z)", returncode=2)
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Export labels as JSONL (sft, pairwise, raw-safe for trainers; discriminator for the critic; raw for admins) "
        "with a manifest."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", required=True, dest="fmt", help=f"one of: {', '.join(FORMATS)}")
        parser.add_argument("--out", required=True, type=Path, help="the JSONL file to write")
        parser.add_argument("--include-demo", action="store_true", help="also export the demo labels")
        parser.add_argument(
            "--with-execution",
            action="store_true",
            help="sft: add a second row per patch teaching the execution-graded verdict (source: execution)",
        )
        parser.add_argument(
            "--min-margin",
            type=float,
            default=DEFAULT_MIN_MARGIN,
            help=f"pairwise: minimum difference of human final scores in a pair (default {DEFAULT_MIN_MARGIN})",
        )
        parser.add_argument(
            "--cutoff",
            help="only labels created at or before this ISO 8601 moment (default: now); the same cut-off "
            "gives the same file later",
        )
        parser.add_argument(
            "--client",
            help="only this API client's patches (a file to hand to that client; never mixes in another's)",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, fmt: str, out: Path, **options: Any) -> None:
        cutoff = parse_cutoff(options["cutoff"])
        client = None
        if options["client"]:
            client = get_user_model().objects.filter(username=options["client"]).first()
            if client is None:
                raise CommandError(f"--client {options['client']!r}: no such account", returncode=2)
        bar: list[tqdm] = []

        def progress(done: int, total: int) -> None:
            if not bar:
                bar.append(tqdm(total=total, desc=f"export {fmt}", unit="patch", file=sys.stderr))
            bar[0].update(done - bar[0].n)

        try:
            manifest = export_labels(
                fmt=fmt,
                out=out,
                include_demo=options["include_demo"],
                cutoff=cutoff,
                min_margin=options["min_margin"],
                with_execution=options["with_execution"],
                client=client,
                progress=None if options["no_progress"] else progress,
            )
        except ExportError as exc:
            raise CommandError(str(exc), returncode=2) from exc
        finally:
            for b in bar:
                b.close()
        counts = manifest["counts"]
        self.stdout.write(
            f"Wrote {manifest['rows']} {fmt} rows to {out} (train {counts['train']}, val {counts['val']}); "
            f"manifest {manifest_path(out)}"
        )
        if manifest["audience"] != "trainer":
            self.stderr.write(f"{fmt}: {manifest['audience_note']}.")
        if not manifest["rows"] and fmt == "discriminator":
            self.stderr.write(
                "No discriminator verdicts matched: the file is empty. Score patches of a task that has a reference, "
                "or add --include-demo."
            )
        elif not manifest["rows"]:
            self.stderr.write("No labels matched: the file is empty. Label some patches, or add --include-demo.")
