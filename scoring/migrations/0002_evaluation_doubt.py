"""Evaluation.doubt (the criteria still in doubt) and one index that serves the whole review queue."""

from django.conf import settings
from django.db import migrations, models


def fill_doubt(apps, schema_editor):
    """Derive `doubt` for the evaluations stored before the column existed, as scoring.services does now."""
    Evaluation = apps.get_model("scoring", "Evaluation")
    threshold = settings.REVIEWAPP["HEAL_CONFIDENCE"]
    for evaluation in Evaluation.objects.only("subscores").iterator(chunk_size=500):
        doubt = [
            name
            for name, sub in evaluation.subscores.items()
            if sub.get("score") is not None and float(sub.get("confidence", 0.0)) < threshold
        ]
        if doubt:
            Evaluation.objects.filter(pk=evaluation.pk).update(doubt=doubt)


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0001_initial"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="evaluation",
            name="scoring_eva_route_a80917_idx",
        ),
        migrations.AddField(
            model_name="evaluation",
            name="doubt",
            field=models.JSONField(
                default=list, help_text="criteria still below the confidence threshold after healing"
            ),
        ),
        migrations.RunPython(fill_doubt, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="evaluation",
            index=models.Index(
                fields=["pipeline_version", "min_confidence", "patch", "route", "flags", "doubt"],
                name="evaluation_queue",
            ),
        ),
    ]
