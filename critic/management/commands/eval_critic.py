"""python manage.py eval_critic --model DIR --data PATH

Judges the `val` rows of an `sft` or `discriminator` export (all rows when there are none) with the critic in DIR
and reports, per criterion, the mean absolute error against the human labels, band agreement, correctness
agreement with execution, the accuracy of its per-input verdicts against execution and the valid-JSON rate
(scoring.core.learned.train.evaluate). The metrics are stored as a CriticRun, which /exports/ charts over critic
versions. Exit 0 when evaluated, 2 on bad input, 1 on an internal failure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from critic.management.commands.train_critic import bad_input, check_data, check_model, critic_extras
from critic.services import critic_run_record
from scoring.selectors import active_weights


def readable(report: dict[str, Any]) -> str:
    """The report as a few aligned lines; None shows as "n/a" (nothing was comparable)."""

    def show(value: Any) -> str:
        return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = [
        f"rows judged            {report['rows']} ({report['split']})",
        f"valid_json_rate        {show(report['valid_json_rate'])}",
        f"band_agreement         {show(report['band_agreement'])} (n={report['band_counted']})",
        f"correctness_agreement  {show(report['correctness_agreement'])} (n={report['correctness_counted']})",
        f"discriminator_accuracy {show(report['discriminator_accuracy'])} (n={report['discriminator_counted']}; "
        f"always the commoner answer: {show(report['discriminator_baseline'])}, "
        f"disagreement recall: {show(report['discriminator_recall'])})",
        "mae (critic / tools):",
    ]
    for name, value in report["mae"].items():
        lines.append(f"  {name:<20} {show(value)} / {show(report['mae_tools'].get(name))}")
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Evaluate a trained critic against the labels of an sft or discriminator export and store the metrics."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", required=True, type=Path, help="the critic's model folder")
        parser.add_argument("--data", required=True, type=Path, help="an sft or discriminator export (JSONL)")
        parser.add_argument("--name", dest="critic_version", help="the critic's name (default: the folder name)")
        parser.add_argument("--max-new-tokens", type=int, default=384, help="answer length limit (default 384)")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument("--no-store", action="store_true", help="do not record the metrics")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, model: Path, data: Path, **options: Any) -> None:
        check_data(data)
        check_model(model, "--model")
        if options["max_new_tokens"] < 1:
            raise bad_input("--max-new-tokens must be at least 1")
        critic_extras()
        from scoring.core.learned.train import evaluate

        _, weights = active_weights()
        try:
            report = evaluate(
                model_dir=model,
                data=data,
                weights=weights,
                progress=not options["no_progress"],
                max_new_tokens=options["max_new_tokens"],
            )
        except ValueError as exc:  # an empty or malformed export, an unusable model folder
            raise bad_input(str(exc)) from exc
        version = options["critic_version"] or model.resolve().name
        if not options["no_store"]:
            report["run"] = critic_run_record(report=report, version=version, data=str(data)).pk
        self.stdout.write(json.dumps(report, indent=2) if options["json"] else readable(report))
