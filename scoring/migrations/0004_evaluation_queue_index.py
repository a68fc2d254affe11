"""One index that serves the review queue's order, filters and counts (scoring.models.Evaluation)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0003_evaluation_doubt_filled"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="evaluation",
            index=models.Index(
                fields=["pipeline_version", "min_confidence", "patch", "route", "flags", "doubt"],
                name="evaluation_queue",
            ),
        ),
    ]
