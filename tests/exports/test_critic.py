"""The learned critic on real data: export -> train_critic -> eval_critic, then its view on a new patch.

A tiny model is built offline (scoring.core.learned.tiny) and trained for real; nothing is downloaded or mocked.
"""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings

from critic import services as critic
from critic import tasks
from labeling.models import CriticRun
from scoring.core.learned.prompt import build_messages
from scoring.core.learned.tiny import build_tiny_model
from scoring.models import Evaluation, PatchStatus, Task
from scoring.selectors import critic_input
from tests.exports.factories import make_label, make_patch, make_task, two_sided_tasks

pytestmark = pytest.mark.django_db

#: Every label teaches this verdict, so a few steps make the tiny model say it whatever the prompt.
TAUGHT = {"correctness": 0.1, "style": 1.0, "performance": None, "security": 1.0}


@pytest.fixture(autouse=True)
def fresh_worker(monkeypatch):
    """Each test starts like a new worker process: no critic loaded yet. One torch thread (2 shared cores)."""
    monkeypatch.setattr(critic, "_critic", None)
    monkeypatch.setattr(critic, "_loaded", False)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def configured(model_dir):
    from django.conf import settings

    return override_settings(REVIEWAPP={**settings.REVIEWAPP, "CRITIC_MODEL": str(model_dir)})


def doubtful_patch(task, n=50):
    """An auto-accepted patch with a doubtful subscore, so the critic looks at it. Correctness measured 0.9.

    The training patches look the same, so that the tiny model, which learns little, answers it as taught.
    """
    scores = {"correctness": 0.9, "style": 1.0, "security": 1.0}
    return make_patch(task, n, scores=scores, status=PatchStatus.SCORED, route="auto", confidence=0.5)


def test_critic_is_off_cleanly_without_a_model(db):
    with configured(""):
        assert tasks.critic_enqueue(1) is False
        assert tasks.critic_review(1) == "critic off"


def test_the_critic_looks_at_review_bound_or_doubtful_patches_only():
    task = make_task("routing")
    confident = make_patch(task, 0, status=PatchStatus.SCORED, route="auto", confidence=0.95)
    queued = make_patch(task, 1, status=PatchStatus.NEEDS_REVIEW, route="review", confidence=0.95)
    doubtful = doubtful_patch(task, 2)
    assert [critic.review_bound(p, p.evaluations.get()) for p in (confident, queued, doubtful)] == [False, True, True]


def test_the_critic_is_asked_only_once_the_evaluation_is_committed(django_capture_on_commit_callbacks, tmp_path):
    with configured(tmp_path), django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert tasks.critic_enqueue(7) is True
    assert len(callbacks) == 1


def test_only_review_bound_patches_are_sent_to_the_critic_queue(
    redis_server, django_capture_on_commit_callbacks, tmp_path
):
    from scoring.health import redis_client

    broker = redis_client()
    broker.delete("critic")
    task = make_task("queue")
    confident = make_patch(task, 0, status=PatchStatus.SCORED, route="auto", confidence=0.95)
    doubtful = doubtful_patch(task, 1)
    with configured(tmp_path), django_capture_on_commit_callbacks(execute=True):
        assert tasks.critic_enqueue(confident.pk) and tasks.critic_enqueue(doubtful.pk)
    sent = [json.loads(message)["headers"] for message in broker.lrange("critic", 0, -1)]
    broker.delete("critic")
    assert [(h["task"], h["argsrepr"]) for h in sent] == [("critic.tasks.critic_review", f"({doubtful.pk},)")]


def test_a_configured_path_that_is_not_a_model_is_an_error_naming_the_variable(tmp_path):
    with configured(tmp_path / "typo"), pytest.raises(ValueError, match="REVIEWAPP_CRITIC_MODEL"):
        critic.worker_critic()


@pytest.mark.critic
def test_export_train_evaluate_then_the_critic_flags_a_patch_it_disagrees_with(make_user, tmp_path):
    rita, _ = make_user("rita", "reviewer")
    for t, name in enumerate(two_sided_tasks()):
        task = make_task(name)
        for i in range(3):
            make_label(doubtful_patch(task, 10 * t + i), rita, TAUGHT, comment="ok")
    data = tmp_path / "sft.jsonl"
    call_command("export_labels", "--format", "sft", "--out", str(data), "--no-progress", stdout=StringIO())
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    base = build_tiny_model(tmp_path / "base", corpus=[m["content"] for r in rows for m in r["messages"]])

    out = tmp_path / "critic-v1"
    trained = StringIO()
    # 320 steps: at 160 the tiny model wrote one of the three val verdicts as garbage on an Intel Xeon (another
    # CPU's float kernels), while an AMD EPYC had passed; twice as many leave a margin on both.
    call_command(
        "train_critic", "--data", str(data), "--base-model", str(base), "--out", str(out),
        "--max-steps", "320", "--lr", "1e-2", "--no-progress", stdout=trained,
    )  # fmt: skip
    assert '"steps": 320' in trained.getvalue() and (out / "config.json").is_file()

    printed = StringIO()
    call_command("eval_critic", "--model", str(out), "--data", str(data), "--no-progress", stdout=printed)
    run = CriticRun.objects.get()
    assert run.version == "critic-v1" and run.rows == 3  # the val task's rows
    assert run.valid_json_rate == 1.0 and run.mae["correctness"] == 0.0
    assert run.metrics["mae_tools"]["correctness"] == 0.8  # the tools measured 0.9 where people said 0.1
    assert "valid_json_rate        1.0000" in printed.getvalue()

    # A resubmission of a val patch: the tiny model learns too little to generalise beyond its inputs, and this
    # test is about what the service does with a verdict, which eval_critic above showed the model gives here.
    patch = doubtful_patch(Task.objects.get(name=two_sided_tasks()[0]), 1)
    task, diff, result = critic_input(patch)
    prompt_before = build_messages(task=task, diff=diff, result=result)
    with configured(out):
        assert tasks.critic_review(patch.pk) == "disagrees"
        assert tasks.critic_review(patch.pk) == "already judged"
    evaluation = Evaluation.objects.get(patch=patch)
    correctness = evaluation.subscores["correctness"]
    assert correctness["score"] == 0.9  # what execution measured stays
    assert correctness["evidence"]["critic"] == {"score": 0.1, "delta": 0.8, "model": str(out)}
    assert evaluation.meta["critic"]["status"] == "ok" and evaluation.meta["critic"]["disagrees"] == ["correctness"]
    assert "critic_disagrees" in evaluation.flags and evaluation.route == "review"
    assert evaluation.min_confidence == pytest.approx(0.2)
    assert evaluation.comments == "The tools found nothing to act on. Critic: ok"
    patch.refresh_from_db()
    assert patch.status == PatchStatus.NEEDS_REVIEW

    # Labelled later, the patch exports with the very prompt the critic saw: its own view does not leak in.
    make_label(patch, rita, TAUGHT, comment="ok")
    call_command("export_labels", "--format", "sft", "--out", str(data), "--no-progress", stdout=StringIO())
    exported = next(json.loads(line) for line in data.read_text().splitlines() if f'"patch": {patch.pk},' in line)
    assert exported["messages"][:-1] == prompt_before


@pytest.mark.critic
def test_a_critic_without_a_valid_verdict_is_recorded_as_a_failure_never_a_number(tmp_path):
    untrained = build_tiny_model(tmp_path / "untrained", corpus=["Step: correctness.", '{"correctness": 1}'])
    patch = doubtful_patch(make_task("noisy"))
    before = Evaluation.objects.get(patch=patch)
    with configured(untrained):
        assert tasks.critic_review(patch.pk) == "failed"
    after = Evaluation.objects.get(patch=patch)
    assert after.meta["critic"]["status"] == "failed"
    assert "no valid verdict in 3 attempts" in after.meta["critic"]["error"]
    assert after.subscores == before.subscores and after.flags == before.flags == []
    assert after.final_score == before.final_score and after.comments == before.comments
    patch.refresh_from_db()
    assert patch.status == PatchStatus.SCORED


def test_the_critic_reads_only_what_a_client_may_see_since_its_comment_reaches_clients():
    """Attack: a critic that read the hidden tests could name them in the comment a client receives."""
    patch = make_patch(make_task("secretive"))

    task, diff, result = critic_input(patch)
    prompt = json.dumps(build_messages(task=task, diff=diff, result=result))

    assert "hidden_test_command" not in task and "pytest -q hidden" not in prompt
    assert "test_secret" not in prompt and "test_overflow" not in prompt
    assert result["subscores"]["correctness"]["score"] == 0.6  # the measured scores stay: withholding is for trainers
