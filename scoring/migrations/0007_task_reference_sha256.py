"""A task's reference solution for the discriminator (stored by sha256 like the archives)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("scoring", "0006_task_shared"),
    ]

    operations = [
        migrations.AddField(
            model_name="task",
            name="reference_sha256",
            field=models.CharField(
                blank=True,
                default="",
                help_text="The stored reference solution (diff or archive), if any.",
                max_length=64,
            ),
        ),
    ]
