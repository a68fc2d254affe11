"""What the scoring layer tells the layers above it. They connect receivers in their AppConfig.ready; scoring
never imports them (imports point down only: docs/architecture.md)."""

from django.dispatch import Signal

#: Sent when a patch's Evaluation is recorded and routed (scoring.services.patch_finalize); keyword argument
#: `patch_id`. Sent robustly: a receiver that raises is logged and never fails scoring. A receiver that sends
#: work elsewhere does it on commit (transaction.on_commit).
patch_finalized = Signal()
