"""Fine-tune the critic on an `sft` export with TRL's SFTTrainer, and evaluate it against the human labels.

Training uses the rows whose `split` is "train"; evaluation the "val" rows (all rows when there are none). Each
row's chat is split into prompt (system, user) and completion (the assistant answer), so the loss is on the
answer only and the prompt is tokenized exactly as CriticModel.prompt_ids does at inference.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from scoring.core.aggregate.route import weighted_mean
from scoring.core.learned.model import CriticModel, load_components
from scoring.core.learned.prompt import DISCRIMINATOR_SOURCE
from scoring.core.learned.verdict import Verdict, VerdictError, parse_verdict
from scoring.core.types import Weights

#: A correctness score at or above this counts as "the patch works" when comparing critic and execution.
PASS_THRESHOLD = 0.5

#: Tokens a discriminator row's answer may take (`{"agrees": false}` and the end of the turn).
AGREEMENT_TOKENS = 32

#: Written next to the trained model: what it was trained on and how.
TRAINING_RECORD = "critic_training.json"

Progress = Callable[[int, int], None]  # (done, total)


def read_rows(data: Path, split: str | None) -> list[dict[str, Any]]:
    """Rows of a JSONL export whose `split` equals `split` (every row when `split` is None)."""
    return [row for row in _jsonl(data) if split is None or row.get("split") == split]


def train(
    *,
    data: Path,
    base_model: Path,
    out: Path,
    epochs: float = 1.0,
    max_steps: int = -1,
    lr: float = 2e-5,
    lora: bool = False,
    resume: bool = True,
    progress: bool = True,
    on_progress: Progress | None = None,
    batch_size: int = 1,
    max_length: int = 4096,
    save_steps: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """Fine-tune `base_model` on the `train` rows of the sft JSONL `data`; save model and tokenizer to `out`.

    Checkpoints go to `out/checkpoint-N` every `save_steps` steps; with `resume` a rerun continues from the last
    one. With `lora` a LoRA adapter is trained and merged, so `out` is a plain model folder either way.
    `max_steps` > 0 overrides `epochs`. Returns a summary (rows, steps, loss, resumed_from, seconds).
    """
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    # transformers 5 renamed gradient_checkpointing and warns about the old name, which TRL still sets.
    fields = SFTConfig.__dataclass_fields__
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"

    rows = [_prompt_completion(row) for row in read_rows(data, "train")]
    if not rows:
        raise ValueError(f"{data} has no rows with split 'train'")
    gpu = torch.cuda.is_available()
    bf16 = gpu and torch.cuda.is_bf16_supported()
    model, tokenizer = load_components(base_model, dtype=torch.bfloat16 if bf16 else torch.float32)
    config = SFTConfig(
        output_dir=str(out),
        num_train_epochs=epochs,
        max_steps=max_steps,
        learning_rate=lr,
        per_device_train_batch_size=batch_size,
        max_length=max_length,
        completion_only_loss=True,
        bf16=bf16,
        use_cpu=not gpu,
        **{checkpointing: gpu},  # saves memory on a GPU; only slows the CPU down
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=2,
        logging_steps=10,
        report_to="none",
        disable_tqdm=not progress,
        seed=seed,
    )

    class _Report(TrainerCallback):  # type: ignore[misc]  # transformers is read as Any (follow_imports = skip)
        def on_step_end(
            self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
        ) -> None:
            if on_progress is not None:
                on_progress(state.global_step, state.max_steps)

    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=_lora_config() if lora else None,
        callbacks=[_Report()],
    )
    checkpoint = get_last_checkpoint(str(out)) if resume and out.is_dir() else None
    started = time.monotonic()
    output = trainer.train(resume_from_checkpoint=checkpoint)
    trained = trainer.model.merge_and_unload() if lora else trainer.model
    trained.save_pretrained(out)
    tokenizer.save_pretrained(out)
    summary = {
        "rows": len(rows),
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "train_loss": output.training_loss,
        "resumed_from": checkpoint,
        "lora": lora,
        "base_model": str(base_model),
        "out": str(out),
        "seconds": round(time.monotonic() - started, 2),
    }
    (out / TRAINING_RECORD).write_text(json.dumps(summary, indent=2))
    return summary


def evaluate(
    *,
    model_dir: Path,
    data: Path,
    weights: Weights,
    progress: bool = True,
    on_progress: Progress | None = None,
    max_new_tokens: int = 384,
    retries: int = 0,
) -> dict[str, Any]:
    """Judge the `val` rows of the sft or discriminator JSONL `data` (all rows if none) and compare with the labels.

    On `discriminator` rows (docs/exports.md) the critic answers whether the patch agrees with the reference on
    one call; `discriminator_accuracy` is how often that answer matches what execution found (an answer that does
    not parse counts as wrong), beside `discriminator_baseline`, the accuracy of always giving the commoner
    answer, and `discriminator_recall`, the share of disagreeing calls it called so. On sft rows it reports
    per-criterion mean absolute error against human-labelled rows (and, as the baseline the critic must
    beat, that of the tools' own scores: `mae_tools`), how often the critic's final score
    (under `weights`) lands on the same side of the band as the human's (below / inside / above), how often its
    correctness agrees with execution (both at or above PASS_THRESHOLD, or both below), and the rate of valid JSON
    verdicts. With the default `retries=0` that rate is the first answer's; a rate is None when nothing was
    comparable.
    """
    from tqdm import tqdm

    rows = read_rows(data, "val")
    split = "val"
    if not rows:
        rows, split = read_rows(data, None), "all"
    if not rows:
        raise ValueError(f"{data} has no rows")
    critic = CriticModel.load(model_dir)
    criteria = critic.criteria
    errors: dict[str, list[float]] = {name: [] for name in criteria}
    tool_errors: dict[str, list[float]] = {name: [] for name in criteria}
    band, correctness, valid = [], [], 0
    checks: list[tuple[bool, bool | None]] = []  # (what execution found, what the critic said) per discriminator row
    for done, row in enumerate(tqdm(rows, desc="eval_critic", disable=not progress), start=1):
        if row.get("source") == DISCRIMINATOR_SOURCE:
            said = _agreement(critic, row, max_new_tokens=min(max_new_tokens, AGREEMENT_TOKENS), retries=retries)
            valid += said is not None
            checks.append((row["agrees"], said))
            if on_progress is not None:
                on_progress(done, len(rows))
            continue
        human = _human_verdict(row, criteria)
        executed = row.get("execution") or {}
        if human is not None:
            _add_errors(tool_errors, executed, human.subscores)
        try:
            verdict = critic.judge(row["messages"][:-1], max_new_tokens=max_new_tokens, retries=retries)
        except VerdictError:
            verdict = None
        if verdict is not None:
            valid += 1
            if human is not None:
                _add_errors(errors, verdict.subscores, human.subscores)
                sides = [_band_side(v.subscores, weights) for v in (verdict, human)]
                if None not in sides:
                    band.append(sides[0] == sides[1])
            judged = verdict.subscores.get("correctness")
            if executed.get("correctness") is not None and judged is not None:
                correctness.append((judged >= PASS_THRESHOLD) == (executed["correctness"] >= PASS_THRESHOLD))
        if on_progress is not None:
            on_progress(done, len(rows))
    return {
        "rows": len(rows),
        "split": split,
        "valid_json_rate": valid / len(rows),
        "mae": {name: _mean(values) for name, values in errors.items()},
        "mae_counts": {name: len(values) for name, values in errors.items()},
        "mae_tools": {name: _mean(values) for name, values in tool_errors.items()},
        "band_agreement": _mean(band),
        "band_counted": len(band),
        "correctness_agreement": _mean(correctness),
        "correctness_counted": len(correctness),
        "band": [weights.band_low, weights.band_high],
        **_discriminator_metrics(checks),
        "model": str(model_dir),
    }


def _agreement(critic: CriticModel, row: Mapping[str, Any], *, max_new_tokens: int, retries: int) -> bool | None:
    """The critic's answer to a discriminator row, or None when it gave no valid one."""
    if not isinstance(row.get("agrees"), bool):
        raise ValueError("a discriminator row needs `agrees`, true or false (what execution found)")
    try:
        return critic.agrees(row["messages"][:-1], max_new_tokens=max_new_tokens, retries=retries)
    except VerdictError:
        return None


def _discriminator_metrics(checks: list[tuple[bool, bool | None]]) -> dict[str, Any]:
    """Accuracy against execution on discriminator rows, the majority-answer baseline and the disagreement
    recall; None where nothing was counted."""
    truths = [truth for truth, _ in checks]
    disagreeing = [said for truth, said in checks if not truth]
    commoner = max(truths.count(True), truths.count(False)) if truths else 0
    return {
        "discriminator_accuracy": _mean([truth == said for truth, said in checks]),
        "discriminator_counted": len(checks),
        "discriminator_baseline": round(commoner / len(truths), 4) if truths else None,
        "discriminator_recall": _mean([said is False for said in disagreeing]),
    }


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not JSON: {error}") from error


def _prompt_completion(row: Mapping[str, Any]) -> dict[str, Any]:
    """Split an sft row's chat into TRL's conversational prompt-completion form."""
    messages = row.get("messages") or []
    if len(messages) < 2 or messages[-1].get("role") != "assistant":
        raise ValueError("an sft row needs `messages` ending with the assistant answer")
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def _human_verdict(row: Mapping[str, Any], criteria: tuple[str, ...]) -> Verdict | None:
    """The human label of a row (its training target), or None when the target came from execution."""
    if row.get("source", "human") != "human":
        return None
    try:
        return parse_verdict(row["messages"][-1]["content"], criteria=criteria)
    except VerdictError as error:
        raise ValueError(f"an sft row's target is not a valid verdict: {error}") from error


def _add_errors(
    errors: dict[str, list[float]], judged: Mapping[str, float | None], human: Mapping[str, float | None]
) -> None:
    """Append |judged - human| per criterion where both gave a score."""
    for name, values in errors.items():
        judged_score, human_score = judged.get(name), human.get(name)
        if judged_score is not None and human_score is not None:
            values.append(abs(judged_score - human_score))


def _band_side(subscores: Mapping[str, float | None], weights: Weights) -> int | None:
    """-1 below the band, 0 inside (inclusive), 1 above; None when there is no final score (no correctness)."""
    if subscores.get("correctness") is None:
        return None
    final = weighted_mean(subscores, weights.weights)
    if final is None:
        return None
    return -1 if final < weights.band_low else (1 if final > weights.band_high else 0)


def _mean(values: list[float] | list[bool]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _lora_config() -> Any:
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
