"""Data migrations on the rows they find: a database made before a migration keeps its data and gains the
derived columns."""

from __future__ import annotations


def test_evaluations_stored_before_doubt_existed_get_theirs(migrator):
    old = migrator.apply_initial_migration(("scoring", "0001_initial")).apps
    task = old.get_model("scoring", "Task").objects.create(name="t", spec={}, base_sha256="0" * 64)
    profile = old.get_model("scoring", "WeightProfile").objects.create(
        name="default", version=1, weights={"correctness": 1.0}, perf_knots=[]
    )
    Patch, Evaluation = old.get_model("scoring", "Patch"), old.get_model("scoring", "Evaluation")

    def stored(confidences: dict[str, float], *, unmeasured: str = "") -> int:
        patch = Patch.objects.create(task=task, diff="d", diff_sha256=f"{Patch.objects.count():064x}")
        subscores = {
            name: {"score": None if name == unmeasured else 0.5, "confidence": c, "rationale": [], "evidence": {}}
            for name, c in confidences.items()
        }
        return Evaluation.objects.create(
            patch=patch, pipeline_version="v", subscores=subscores, weight_profile=profile, route="review"
        ).pk

    # Stored out of registry order, as PostgreSQL's jsonb gives keys back (shortest first).
    doubtful = stored({"style": 0.2, "security": 0.8, "correctness": 0.9, "performance": 0.5})
    sure = stored({"correctness": 0.9, "style": 0.95})
    unmeasured = stored({"correctness": 0.9, "performance": 0.1}, unmeasured="performance")

    new = migrator.apply_tested_migration(("scoring", "0003_evaluation_doubt_filled")).apps

    doubt = dict(new.get_model("scoring", "Evaluation").objects.values_list("pk", "doubt"))
    assert doubt == {doubtful: ["style", "performance"], sure: [], unmeasured: []}
