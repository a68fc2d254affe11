from django.apps import AppConfig


class TuningConfig(AppConfig):
    """Weight profiles: versions, activation with re-aggregation, the what-if and the fit to human labels."""

    name = "tuning"
    verbose_name = "Tuning"
