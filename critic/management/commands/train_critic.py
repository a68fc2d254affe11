"""python manage.py train_critic --data PATH --base-model DIR --out DIR [--epochs --max-steps --lr --lora --no-resume]

Fine-tunes a local causal LM on the `train` rows of an `sft` export (scoring.core.learned.train.train, TRL's
SFTTrainer) and saves a plain model folder to DIR. Rerunning with the same DIR resumes from its last checkpoint
unless --no-resume. Exit 0 when trained, 2 on bad input (with a message), 1 on an internal failure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


def bad_input(message: str) -> CommandError:
    return CommandError(message, returncode=2)


def check_data(path: Path) -> None:
    """An export file must exist and be readable; CommandError (exit 2) otherwise."""
    if not path.is_file():
        raise bad_input(f"--data {path}: no such file; write one with `manage.py export_labels --format sft`")


def check_model(path: Path, option: str) -> None:
    """A Hugging Face model folder must hold config.json; CommandError (exit 2) otherwise."""
    if not (path / "config.json").is_file():
        raise bad_input(f"{option} {path}: not a Hugging Face model folder (no config.json)")


def critic_extras() -> None:
    """torch, transformers and trl must be importable; CommandError (exit 1) with the install command otherwise."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        import trl  # noqa: F401
    except ImportError as exc:
        raise CommandError(f"the critic extras are missing ({exc}); run: pip install -e '.[critic]'") from exc


class Command(BaseCommand):
    help = "Fine-tune the learned critic on the train rows of an sft or discriminator export (or both, concatenated)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", required=True, type=Path, help="an sft or discriminator export (JSONL)")
        parser.add_argument("--base-model", required=True, type=Path, help="a local Hugging Face model folder")
        parser.add_argument("--out", required=True, type=Path, help="where to save the trained model")
        parser.add_argument("--epochs", type=float, default=1.0, help="passes over the train rows (default 1)")
        parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (overrides epochs)")
        parser.add_argument("--lr", type=float, default=2e-5, help="learning rate (default 2e-5; 2e-4 with --lora)")
        parser.add_argument("--lora", action="store_true", help="train a LoRA adapter (peft) and merge it")
        parser.add_argument("--batch-size", type=int, default=1, help="rows per step (default 1)")
        parser.add_argument("--no-resume", action="store_true", help="start over instead of resuming from OUT")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, data: Path, base_model: Path, out: Path, **options: Any) -> None:
        check_data(data)
        check_model(base_model, "--base-model")
        if out.exists() and not out.is_dir():
            raise bad_input(f"--out {out} is a file; give a folder")
        if not options["epochs"] > 0 or not options["lr"] > 0 or options["batch_size"] < 1:
            raise bad_input("--epochs and --lr must be positive and --batch-size at least 1")
        if options["max_steps"] == 0 or options["max_steps"] < -1:
            raise bad_input("--max-steps must be a positive number of steps (or -1 to use --epochs)")
        critic_extras()
        from scoring.core.learned.train import train

        try:
            summary = train(
                data=data,
                base_model=base_model,
                out=out,
                epochs=options["epochs"],
                max_steps=options["max_steps"],
                lr=options["lr"],
                lora=options["lora"],
                batch_size=options["batch_size"],
                resume=not options["no_resume"],
                progress=not options["no_progress"],
            )
        except ValueError as exc:  # no train rows, rows that are not sft, an unusable model folder
            raise bad_input(str(exc)) from exc
        self.stdout.write(json.dumps(summary, indent=2))
        self.stdout.write(
            f"Saved the critic to {out}; evaluate it with: manage.py eval_critic --model {out} --data {data}"
        )
