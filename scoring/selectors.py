"""Reads: the active weight profile, a patch's Result as docs/contract.md fixes it, a batch's rewards, patch lists."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.db.models import Prefetch, Q, QuerySet

from scoring.client import reward_for
from scoring.core.aggregate import policy
from scoring.core.aggregate.route import default_weights
from scoring.core.critics import discriminator
from scoring.core.critics.registry import CRITERIA, REGISTRY
from scoring.core.pipeline import PIPELINE_VERSION
from scoring.core.types import Weights
from scoring.models import TERMINAL_STATUSES, Evaluation, Patch, PatchStatus, Task, WeightProfile


def weights_of(profile: WeightProfile) -> Weights:
    """The pure Weights for a stored profile."""
    return Weights(
        name=profile.name,
        version=profile.version,
        weights=dict(profile.weights),
        band_low=profile.band_low,
        band_high=profile.band_high,
        audit_rate=profile.audit_rate,
        perf_knots=tuple(tuple(k) for k in profile.perf_knots),
        shaping=profile.shaping,
    )


def active_weights() -> tuple[WeightProfile, Weights]:
    """The active profile; the registry defaults are stored as `default` v1 the first time it is asked for."""
    profile = WeightProfile.objects.filter(is_active=True).first()
    if profile is None:
        defaults = default_weights(REGISTRY)
        profile, _ = WeightProfile.objects.get_or_create(
            name=defaults.name,
            version=defaults.version,
            defaults={
                "weights": dict(defaults.weights),
                "band_low": defaults.band_low,
                "band_high": defaults.band_high,
                "audit_rate": defaults.audit_rate,
                "perf_knots": [list(k) for k in defaults.perf_knots],
                "note": "built-in defaults",
            },
        )
        if not WeightProfile.objects.filter(is_active=True).exists():
            WeightProfile.objects.filter(pk=profile.pk).update(is_active=True)
    return profile, weights_of(profile)


def current_evaluation(patch: Patch) -> Evaluation | None:
    """The evaluation of the current pipeline version (prefetched as `current_evaluations` when listing)."""
    prefetched = getattr(patch, "current_evaluations", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return patch.evaluations.filter(pipeline_version=PIPELINE_VERSION).select_related("weight_profile").first()


def with_results(queryset: QuerySet[Patch]) -> QuerySet[Patch]:
    """Prefetch what patch_result needs, so a page of Results costs a constant number of queries."""
    return queryset.select_related("task").prefetch_related(
        Prefetch(
            "evaluations",
            queryset=Evaluation.objects.filter(pipeline_version=PIPELINE_VERSION).select_related("weight_profile"),
            to_attr="current_evaluations",
        )
    )


def hide_hidden_tests(subscores: dict[str, Any]) -> dict[str, Any]:
    """API clients see counts and pass/fail of hidden tests only: no names, no source, no output.

    Nor the output of visible tests that shared a process with the hidden ones (`client_output: false`): code
    under test could have copied hidden values into a visible test's failure message. Nor the discriminator's
    per-input verdicts (`discriminator.client_evidence` says why).
    """
    subscores = copy.deepcopy(subscores)
    for sub in subscores.values():
        evidence = sub.get("evidence", {})
        if isinstance(evidence.get("discriminator"), dict):
            evidence["discriminator"] = discriminator.client_evidence(evidence["discriminator"])
        hidden = evidence.get("hidden")
        if isinstance(hidden, dict):
            evidence["hidden"] = {k: v for k, v in hidden.items() if k in ("passed", "failed", "total")}
        visible = evidence.get("visible")
        if isinstance(visible, dict) and visible.get("client_output") is False:
            for test in visible.get("tests", []):
                if isinstance(test, dict) and test.get("output"):
                    test["output"] = "(withheld: this run also held the hidden tests)"
    return subscores


#: Reads the `human` part of a Result (the consensus of the reviewers' labels). The labeling app registers its
#: reader in LabelingConfig.ready: labels live a layer up, and scoring never imports labeling.
HumanReader = Callable[[Patch], "dict[str, Any] | None"]
_human_reader: HumanReader = lambda patch: None  # noqa: E731 (no labels without the labeling app)


def human_reader_register(reader: HumanReader) -> None:
    """Make `reader` the one that fills the `human` part of Results (called once, at start-up)."""
    global _human_reader
    _human_reader = reader


def human_of(patch: Patch) -> dict[str, Any] | None:
    """The `human` part of a patch's Result, from the registered reader; None before anyone labels it."""
    return _human_reader(patch)


#: Spec keys that name or describe hidden material (the hidden tests, the reference, the discriminator's inputs).
OUTSIDERS_DO_NOT_SEE = ("hidden_test_command", "reference", "inputs", "entry_points")


def spec_for_outsiders(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A task spec without what names or describes hidden material: what a shared task's other clients and the
    learned critic see."""
    return {key: value for key, value in spec.items() if key not in OUTSIDERS_DO_NOT_SEE}


def _payable(patch: Patch, evaluation: Evaluation | None) -> tuple[bool, float | None]:
    """(withheld, final score a trainer may see) of a finished patch: the flag policy's one reading.

    Withheld while the flag policy holds it back (core.aggregate.policy: a `suspicious` patch not yet labelled, when
    REVIEWAPP_WITHHOLD_SUSPICIOUS is on). Once reviewed, a patch the policy held back pays what the people said.
    """
    if evaluation is None:
        return False, None
    # Only a reviewer's labels end withholding; `reviewed` is the status they give (scoring cannot see labels).
    labelled = patch.status == PatchStatus.REVIEWED
    withholding = settings.REVIEWAPP["WITHHOLD_SUSPICIOUS"]
    if policy.withheld(evaluation.flags, labelled=labelled, withholding=withholding):
        return True, None
    final = evaluation.final_score
    if labelled and policy.withheld(evaluation.flags, labelled=False, withholding=True):
        final = evaluation.meta.get("human_final_score", final)  # labeling writes their consensus
    return False, final


def patch_result(
    patch: Patch, *, reveal_hidden: bool, include_id: bool = True, human: Any = None, withhold: bool | None = None
) -> dict[str, Any]:
    """The Result JSON of docs/contract.md for one patch, whatever its status.

    Reviewers and admins (`reveal_hidden`) see everything. A client sees what /rewards/ pays (`withhold`, by
    default for whoever may not see hidden material): while the flag policy withholds a patch, its final score and
    subscores' scores are null, exactly as there.
    """
    withhold = not reveal_hidden if withhold is None else withhold
    evaluation = current_evaluation(patch) if patch.status not in (PatchStatus.REJECTED,) else None
    result: dict[str, Any] = {
        "id": patch.pk,
        "task": patch.task.name,
        "external_id": patch.external_id,
        "status": patch.status,
        "final_score": 0.0 if patch.status == PatchStatus.REJECTED else None,
        "weight_profile": None,
        "route": None,
        "flags": [],
        "subscores": {},
        "comments": patch.reason,
        "human": human,
        "meta": {"pipeline_version": PIPELINE_VERSION, "attempts": patch.attempts},
    }
    if evaluation is not None:
        subscores = evaluation.subscores if reveal_hidden else hide_hidden_tests(evaluation.subscores)
        result.update(
            final_score=evaluation.final_score,
            weight_profile={
                "name": evaluation.weight_profile.name,
                "version": evaluation.weight_profile.version,
            },
            route=evaluation.route,
            flags=evaluation.flags,
            subscores=subscores,
            comments=evaluation.comments,
            meta=dict(evaluation.meta, attempts=patch.attempts),
        )
        if withhold:
            withheld, final = _payable(patch, evaluation)
            result["final_score"] = final
            if withheld:
                result["subscores"] = {name: dict(sub, score=None) for name, sub in subscores.items()}
                result["meta"]["withheld"] = True
    if not include_id:
        result.pop("id")
    return result


def rewards_of(*, ids: list[int]) -> dict[str, Any]:
    """The /rewards/ answer for patches `ids`, in order: {"ids", "status", "rewards", "subscores"}.

    A reward is null while a patch is unfinished, and while the flag policy withholds it (core.aggregate.policy: a
    `suspicious` patch not yet labelled, when REVIEWAPP_WITHHOLD_SUSPICIOUS is on); its subscores are null too, so
    no per-criterion reward function trains on it either. Rejected patches get 0.0; failed and cancelled ones null
    (an infrastructure outcome, not the patch's).
    """
    patches = {p.pk: p for p in with_results(Patch.objects.filter(pk__in=ids))}
    out: dict[str, Any] = {"ids": ids, "status": [], "rewards": [], "subscores": {c: [] for c in CRITERIA}}
    for pk in ids:
        patch = patches[pk]
        evaluation = current_evaluation(patch) if patch.status in TERMINAL_STATUSES else None
        withheld, final = _payable(patch, evaluation)
        # One table says what each status is worth (scoring.client.reward_for); None: nothing to train on.
        reward = reward_for(patch.status, final, withheld=withheld)
        subscores = evaluation.subscores if evaluation is not None and not withheld else {}
        out["status"].append(patch.status)
        out["rewards"].append(reward)
        for criterion in CRITERIA:
            out["subscores"][criterion].append(subscores.get(criterion, {}).get("score"))
    return out


def patches_visible_to(user: Any) -> QuerySet[Patch]:
    """Clients see their own patches; reviewers and admins see all."""
    from scoring.roles import is_staff_reader

    queryset = Patch.objects.all()
    if not is_staff_reader(user):
        queryset = queryset.filter(client=user)
    return queryset


def tasks_visible_to(user: Any) -> QuerySet[Task]:
    """Clients see (and score) the tasks they registered and the shared ones; reviewers and admins see all."""
    from scoring.roles import is_staff_reader

    queryset = Task.objects.all()
    if not is_staff_reader(user):
        queryset = queryset.filter(Q(shared=True) | Q(created_by=user))
    return queryset


def critic_input(patch: Patch) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """(task spec, diff, Result) of a patch: what export and critic inference both give build_messages.

    One function for both, so an exported row and a fresh inference see the same prompt. It is the client's view
    of hidden material (counts, no names, no output; the spec without hidden keys), with the measured scores: the
    critic's comment reaches clients, so it must never have read what they may not see.
    """
    # That hidden tests exist is no secret (clients see their counts); the prompt says so.
    spec = spec_for_outsiders(patch.task.spec) | {"hidden_tests": bool(patch.task.spec.get("hidden_test_command"))}
    return spec, patch.diff, patch_result(patch, reveal_hidden=False, include_id=False, withhold=False)


def tools_comments(evaluation_meta: Mapping[str, Any], comments: str) -> str:
    """The comments the pipeline wrote, without what the learned critic added (critic.services keeps them)."""
    critic = evaluation_meta.get("critic") or {}
    return critic.get("tools_comments", comments) if isinstance(critic, Mapping) else comments
