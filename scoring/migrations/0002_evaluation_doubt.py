"""Evaluation.doubt: the criteria still in doubt (filled for stored rows by 0003)."""

from django.db import migrations, models


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
    ]
