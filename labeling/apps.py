from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class LabelingConfig(AppConfig):
    name = "labeling"
    verbose_name = "Labeling"

    def ready(self) -> None:
        # The patch API (scoring) shows the reviewers' consensus without importing this app.
        from labeling.selectors import human_consensus
        from scoring.selectors import human_reader_register

        human_reader_register(human_consensus)


class ReviewAdminConfig(admin_apps.AdminConfig):
    """`django.contrib.admin` with the admins-only site: list "labeling.apps.ReviewAdminConfig" in
    INSTALLED_APPS instead of "django.contrib.admin"."""

    default = False  # not the default config of the `labeling` app; LabelingConfig is
    default_site = "scoring.admin_site.ReviewAdminSite"
