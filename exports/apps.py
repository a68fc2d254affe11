from django.apps import AppConfig


class ExportsConfig(AppConfig):
    """Export jobs: the corrected labels as training data (JSONL and Parquet), per audience."""

    name = "exports"
    verbose_name = "Exports"
