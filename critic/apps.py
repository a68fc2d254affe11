from django.apps import AppConfig


class CriticConfig(AppConfig):
    """The learned critic: its view on review-bound patches, its training and evaluation runs."""

    name = "critic"
    verbose_name = "Critic"

    def ready(self) -> None:
        # scoring sends `patch_finalized`; it cannot import this app (imports point down only).
        from critic import tasks
        from scoring.signals import patch_finalized

        patch_finalized.connect(tasks.on_patch_finalized, dispatch_uid="critic.review")
