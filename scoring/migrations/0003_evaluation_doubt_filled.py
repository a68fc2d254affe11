"""Fill Evaluation.doubt for the rows stored before it existed, as scoring.services.confidence_fields does.

Not atomic: each chunk commits on its own, so the table is never locked for the whole run.
"""

from django.conf import settings
from django.db import migrations

#: The criteria when this migration was written, in registry order (a migration does not follow later code).
CRITERIA = ("correctness", "style", "performance", "security")
CHUNK = 500


def fill_doubt(apps, schema_editor):
    Evaluation = apps.get_model("scoring", "Evaluation")
    threshold = settings.REVIEWAPP["HEAL_CONFIDENCE"]
    last = 0
    while True:
        rows = list(Evaluation.objects.filter(pk__gt=last).order_by("pk").only("pk", "subscores")[:CHUNK])
        if not rows:
            return
        for row in rows:
            row.doubt = [
                name
                for name in CRITERIA
                if (sub := row.subscores.get(name)) is not None
                and sub.get("score") is not None
                and float(sub.get("confidence", 0.0)) < threshold
            ]
        Evaluation.objects.bulk_update(rows, ["doubt"])
        last = rows[-1].pk


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("scoring", "0002_evaluation_doubt"),
    ]

    operations = [
        migrations.RunPython(fill_doubt, migrations.RunPython.noop, elidable=True),
    ]
