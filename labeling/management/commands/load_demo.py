"""python manage.py load_demo: demo tasks, patches scored in-process by the real pipeline, demo labels, and the
demo accounts (printed). Idempotent: what exists is kept, what is missing is added."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from labeling.demo import demo_label
from scoring import accounts, services
from scoring.accounts import DEMO_ACCOUNTS
from scoring.core.analysis.analyser import Analyser
from scoring.core.intake.spec import parse_spec
from scoring.models import Patch, PatchStatus, Task

DEMO_LABELLER = "demo"
DEMO_CLIENT = "demo-trainer"


def demo_root() -> Path:
    return Path(str(resources.files("scoring") / "demo"))


class Command(BaseCommand):
    help = "Load the demo: tasks, patches scored by the real pipeline, demo labels and accounts (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="load even when REVIEWAPP_ENV=production")

    def handle(self, *args, **options) -> None:
        if settings.PRODUCTION and not options["force"]:
            raise CommandError("refusing to load demo accounts in production (use --force)", returncode=2)
        manifest = json.loads((demo_root() / "manifest.json").read_text())
        client = self._user(DEMO_CLIENT, "client")
        labeller = self._user(DEMO_LABELLER, "reviewer")
        entries: list[tuple[Task, dict[str, Any]]] = []
        for task_entry in manifest["tasks"]:
            spec_path = demo_root() / task_entry["spec"]
            spec = parse_spec(spec_path.read_text(), spec_dir=spec_path.parent)
            task = Task.objects.filter(name=spec.name).first() or services.task_create_from_dirs(
                spec=spec,
                is_demo=True,
                shared=True,  # every demo client may score the demo tasks
            )
            entries.extend((task, patch_entry) for patch_entry in task_entry["patches"])

        missing = [
            (task, entry)
            for task, entry in entries
            if not Patch.objects.filter(client=client, task=task, external_id=_external_id(entry)).exists()
        ]
        if missing:
            self.stdout.write(f"Scoring {len(missing)} demo patches with the real pipeline ...")
            with Analyser() as analyser:
                for task, entry in tqdm(missing, unit="patch", disable=None):
                    self._score(task, entry, client=client, analyser=analyser)
        labelled = self._label(entries, client=client, labeller=labeller)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo ready: {len(manifest['tasks'])} tasks, {len(entries)} patches, {labelled} demo labels."
            )
        )
        for username, role, password in DEMO_ACCOUNTS:
            user = self._user(username, role)
            user.set_password(password)
            user.save(update_fields=["password"])
            self.stdout.write(f"  {role:<9} login: {username} / {password}")

    def _user(self, username: str, role: str):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            user, _, _ = accounts.user_create(username=username, role=role)
        return user

    def _score(self, task: Task, entry: dict, *, client, analyser) -> None:
        diff = (demo_root() / entry["file"]).read_text()
        patch = services.patch_submit(
            client=client,
            task=task,
            diff=diff,
            external_id=_external_id(entry),
            metadata={"demo_kind": entry["kind"], "description": entry["description"]},
            check_queue=False,
            enqueue=False,
            is_demo=True,
        ).patch
        assert patch is not None  # patch_submit raises rather than return no patch
        if not services.patch_score_inline(patch=patch, analyser=analyser):
            raise CommandError(f"demo patch {patch.pk} is held by a worker; try again in a minute")

    def _label(self, entries, *, client, labeller) -> int:
        """Demo labels on the good and bad patches of every task: two far-apart patches per task, enough for
        pairwise examples. Borderline and cheating patches stay in the queue for the user to try."""
        count = 0
        for task, entry in entries:
            if entry["kind"] not in ("good", "bad"):
                continue
            patch = Patch.objects.filter(client=client, task=task, external_id=_external_id(entry)).first()
            if patch is None or patch.status not in (PatchStatus.SCORED, PatchStatus.NEEDS_REVIEW):
                continue
            count += demo_label(patch=patch, reviewer=labeller, kind=entry["kind"])
        return count


def _external_id(entry: dict) -> str:
    return "demo:" + entry["file"]
