"""Train a tiny critic for real (TRL SFTTrainer on CPU), load it, judge, evaluate, resume. No download anywhere."""

import json
import shutil

import pytest

from scoring.core.learned.model import MODEL_ENV, CriticModel
from scoring.core.learned.prompt import build_messages, discriminator_row, pairwise_row, sft_row
from scoring.core.learned.tiny import build_tiny_model
from scoring.core.learned.train import evaluate, train
from scoring.core.learned.verdict import VerdictError
from scoring.core.types import Weights

pytestmark = pytest.mark.critic

TRAIN_STEPS = 80
WEIGHTS = Weights(
    name="test", version=1, weights={"correctness": 0.4, "style": 0.2, "performance": 0.2, "security": 0.2}
)
DIFF = (
    "--- a/gcd.py\n+++ b/gcd.py\n@@ -1,2 +1,2 @@\n"
    " def gcd(a, b):\n-    return a\n+    return b and gcd(b, a % b) or a\n"
)
# Every training row teaches the same answer, so a few steps make the tiny model say it, whatever the prompt.
TAUGHT = {"correctness": 1.0, "style": 1.0, "performance": None, "security": 1.0}


def task(name):
    return {"name": name, "test_command": "python -m pytest -q tests"}


def result(correctness):
    def sub(score, step):
        return {"score": score, "confidence": 0.9, "rationale": [step], "evidence": {"failed": []}}

    return {
        "flags": [],
        "subscores": {
            "correctness": sub(correctness, f"Step: correctness. Score {correctness}."),
            "style": sub(1.0, "Step: style. No new messages."),
            "performance": sub(None, "Step: performance. No benchmark."),
            "security": sub(1.0, "Step: security. No new findings."),
        },
    }


def row(name, split, *, executed, labelled=TAUGHT, source="human"):
    return sft_row(
        task=task(name),
        diff=DIFF,
        result=result(executed),
        subscores=labelled,
        comment="ok",
        reasoning=["Step: judged."],
        split=split,
        source=source,
    )


ROWS = [
    *(row(f"train{i}", "train", executed=i / 4) for i in range(4)),
    # Human says 0.5 and 0.0 where the critic will say 1.0; execution measured 1.0 and 0.0.
    row("val0", "val", executed=1.0, labelled={**TAUGHT, "correctness": 0.5}),
    row("val1", "val", executed=0.0, labelled={**TAUGHT, "correctness": 0.0}),
    # An execution-graded target: counts for correctness agreement, never for the error against humans.
    row("val2", "val", executed=1.0, source="execution"),
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: on 2 shared cores this is several times faster, and the run is reproducible."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory, one_thread):
    corpus = [m["content"] for r in ROWS for m in r["messages"]]
    return build_tiny_model(tmp_path_factory.mktemp("base"), corpus=corpus)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("data") / "sft.jsonl", ROWS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base_model, data):
    out = tmp_path_factory.mktemp("critic")
    steps = []
    summary = train(
        data=data,
        base_model=base_model,
        out=out,
        max_steps=TRAIN_STEPS,
        lr=1e-2,
        progress=False,
        on_progress=lambda done, total: steps.append((done, total)),
        save_steps=TRAIN_STEPS,
    )
    return out, summary, steps


def test_training_runs_the_train_rows_and_saves_a_loadable_model(trained):
    out, summary, steps = trained
    assert summary["rows"] == 4 and summary["steps"] == TRAIN_STEPS and summary["resumed_from"] is None
    assert steps[-1] == (TRAIN_STEPS, TRAIN_STEPS)
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    assert json.loads((out / "critic_training.json").read_text())["steps"] == TRAIN_STEPS


def test_trained_critic_answers_with_the_verdict_it_was_taught(trained):
    critic = CriticModel.load(trained[0])
    verdict = critic.judge(ROWS[4]["messages"][:-1], max_new_tokens=80, retries=0)
    assert dict(verdict.subscores) == TAUGHT
    assert verdict.comment == "ok" and verdict.reasoning == ("Step: judged.",)


def test_untrained_model_gives_a_clear_error_after_its_retries_never_a_number(base_model):
    critic = CriticModel.load(base_model)
    with pytest.raises(VerdictError, match="no valid verdict in 2 attempts"):
        critic.judge(ROWS[0]["messages"][:-1], max_new_tokens=24, retries=1)


def test_training_rows_and_inference_send_the_model_the_same_prompt(trained):
    critic = CriticModel.load(trained[0])
    exported = ROWS[5]
    fresh = build_messages(task=task("val1"), diff=DIFF, result=result(0.0))
    assert exported["messages"][:-1] == fresh
    # TRL trains on the prompt tokenized with the assistant turn opened, then the answer: the same prefix.
    full = critic.tokenizer.apply_chat_template(exported["messages"], tokenize=True, return_dict=True)["input_ids"]
    prompt = critic.prompt_ids(fresh)
    assert list(full[: len(prompt)]) == prompt
    assert critic.review(task=task("val1"), diff=DIFF, result=result(0.0), max_new_tokens=80) == critic.judge(
        exported["messages"][:-1], max_new_tokens=80
    )


def test_evaluation_reports_error_band_and_correctness_agreement_and_valid_json_rate(trained, data):
    report = evaluate(model_dir=trained[0], data=data, weights=WEIGHTS, progress=False, max_new_tokens=80)
    assert report["split"] == "val" and report["rows"] == 3
    assert report["valid_json_rate"] == 1.0
    # Critic says 1.0; humans said 0.5 and 0.0.
    assert report["mae"] == {"correctness": 0.75, "style": 0.0, "performance": None, "security": 0.0}
    assert report["mae_counts"]["correctness"] == 2
    # The tools measured 1.0 and 0.0 where humans said 0.5 and 0.0: the baseline the critic has to beat.
    assert report["mae_tools"] == {"correctness": 0.25, "style": 0.0, "performance": None, "security": 0.0}
    # Critic's final 1.0 is above the band; the humans' are 0.75 (above) and 0.5 (inside).
    assert report["band_agreement"] == 0.5 and report["band_counted"] == 2
    # Execution measured 1.0, 0.0 and 1.0.
    assert report["correctness_agreement"] == round(2 / 3, 4) and report["correctness_counted"] == 3


def test_evaluation_uses_every_row_when_there_is_no_val_split(trained, tmp_path):
    data = write_jsonl(tmp_path / "train_only.jsonl", ROWS[:2])
    report = evaluate(model_dir=trained[0], data=data, weights=WEIGHTS, progress=False, max_new_tokens=80)
    assert report["split"] == "all" and report["rows"] == 2


def test_training_resumes_from_the_last_checkpoint(trained, base_model, data, tmp_path):
    out = shutil.copytree(trained[0], tmp_path / "critic")
    summary = train(
        data=data, base_model=base_model, out=out, max_steps=TRAIN_STEPS + 2, lr=1e-2, progress=False, save_steps=1
    )
    assert summary["resumed_from"].endswith(f"checkpoint-{TRAIN_STEPS}")
    assert summary["steps"] == TRAIN_STEPS + 2
    assert (out / f"checkpoint-{TRAIN_STEPS + 2}").is_dir()


def test_lora_training_saves_a_plain_model_folder(base_model, data, tmp_path):
    summary = train(
        data=data, base_model=base_model, out=tmp_path / "lora", max_steps=2, lr=1e-3, lora=True, progress=False
    )
    assert summary["lora"] and summary["steps"] == 2
    critic = CriticModel.load(tmp_path / "lora")
    assert not any("lora" in name for name, _ in critic.model.named_parameters())


def test_training_without_train_rows_is_a_clear_error(base_model, tmp_path):
    data = write_jsonl(tmp_path / "val_only.jsonl", ROWS[4:])
    with pytest.raises(ValueError, match="no rows with split 'train'"):
        train(data=data, base_model=base_model, out=tmp_path / "out", max_steps=1, progress=False)


def test_critic_is_off_when_the_environment_names_no_model(base_model, tmp_path):
    assert CriticModel.from_env({}) is None
    assert CriticModel.from_env({MODEL_ENV: "  "}) is None
    with pytest.raises(ValueError, match=MODEL_ENV):
        CriticModel.from_env({MODEL_ENV: str(tmp_path / "missing")})
    assert CriticModel.from_env({MODEL_ENV: str(base_model)}).model_dir == base_model


def test_datasets_loads_the_sft_and_pairwise_exports(data, tmp_path):
    from datasets import load_dataset

    pairwise = write_jsonl(
        tmp_path / "pairwise.jsonl",
        [
            pairwise_row(
                task=task("gcd"),
                chosen_diff=DIFF,
                rejected_diff="--- a/x\n",
                chosen_score=0.9,
                rejected_score=0.2,
                split=s,
            )
            for s in ("train", "val")
        ],
    )
    sft = load_dataset("json", data_files=str(data), cache_dir=str(tmp_path / "cache"))["train"]
    assert len(sft) == len(ROWS) and sft[0]["messages"][0]["role"] == "system"
    pairs = load_dataset("json", data_files=str(pairwise), cache_dir=str(tmp_path / "cache"))["train"]
    assert {"prompt", "chosen", "rejected", "split"} <= set(pairs.column_names)
    assert pairs[1]["split"] == "val" and pairs[0]["chosen"][0]["role"] == "assistant"


def check(name, split, *, agrees, call="add(2, -3)"):
    return discriminator_row(
        task=task(name), diff=DIFF, entry="calc:add", call=call, agrees=agrees, split=split, extra={"patch": 1}
    )


#: Every training row says the patch disagrees, so the tiny model learns to answer {"agrees": false}.
CHECKS = [
    *(check(f"train{i}", "train", agrees=False, call=f"add({i}, -1)") for i in range(3)),
    check("val0", "val", agrees=False),
    check("val1", "val", agrees=False, call="add(0, 0)"),
    check("val2", "val", agrees=True, call="add(2, 3)"),
]


@pytest.fixture(scope="module")
def checker(tmp_path_factory, one_thread):
    """A tiny critic trained on discriminator rows only."""
    corpus = [m["content"] for r in CHECKS for m in r["messages"]]
    base = build_tiny_model(tmp_path_factory.mktemp("check-base"), corpus=corpus)
    data = write_jsonl(tmp_path_factory.mktemp("check-data") / "discriminator.jsonl", CHECKS)
    out = tmp_path_factory.mktemp("checker")
    train(data=data, base_model=base, out=out, max_steps=40, lr=1e-2, progress=False, save_steps=40)
    return out, data, base


def test_evaluation_reports_the_critics_per_input_accuracy_against_execution(checker):
    out, data, _ = checker
    assert CriticModel.load(out).agrees(CHECKS[3]["messages"][:-1]) is False
    report = evaluate(model_dir=out, data=data, weights=WEIGHTS, progress=False, max_new_tokens=80)
    assert report["split"] == "val" and report["rows"] == 3 and report["valid_json_rate"] == 1.0
    # It says "disagrees" on all three held-out calls; execution found two disagreeing and one agreeing.
    assert report["discriminator_accuracy"] == round(2 / 3, 4) and report["discriminator_counted"] == 3
    assert report["discriminator_baseline"] == round(2 / 3, 4)
    assert report["discriminator_recall"] == 1.0
    # No sft row: the human and band metrics say nothing was comparable rather than a number.
    assert report["band_agreement"] is None and report["correctness_agreement"] is None


def test_an_answer_that_does_not_parse_counts_as_wrong_never_as_a_guess(checker):
    _, data, base = checker
    report = evaluate(model_dir=base, data=data, weights=WEIGHTS, progress=False, max_new_tokens=8)
    assert report["valid_json_rate"] == 0.0
    assert report["discriminator_accuracy"] == 0.0 and report["discriminator_recall"] == 0.0


def test_sft_and_discriminator_rows_in_one_file_are_each_graded_their_way(trained, tmp_path):
    data = write_jsonl(tmp_path / "both.jsonl", [*ROWS, *CHECKS[3:]])
    report = evaluate(model_dir=trained[0], data=data, weights=WEIGHTS, progress=False, max_new_tokens=80)
    assert report["rows"] == 6 and report["discriminator_counted"] == 3 and report["correctness_counted"] == 3
    assert report["mae_counts"]["correctness"] == 2


def test_a_discriminator_row_without_its_label_is_a_clear_error(checker, tmp_path):
    out, _, _ = checker
    broken = {**CHECKS[3]}
    del broken["agrees"]
    with pytest.raises(ValueError, match="needs `agrees`"):
        evaluate(model_dir=out, data=write_jsonl(tmp_path / "bad.jsonl", [broken]), weights=WEIGHTS, progress=False)
