"""python manage.py create_user NAME --role reviewer|admin|client [--password P]"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from scoring import accounts
from scoring.roles import ROLES


class Command(BaseCommand):
    help = "Create a reviewer, admin or API client. For a client, the new API token is printed alone on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the username")
        parser.add_argument("--role", required=True, choices=ROLES)
        parser.add_argument("--password", help="for reviewers and admins; a random one is printed if omitted")

    def handle(self, *args, name: str, role: str, password: str | None, **options) -> None:
        if get_user_model().objects.filter(username=name).exists():
            raise CommandError(f"a user named {name!r} already exists", returncode=2)
        try:
            with transaction.atomic():
                user, password_used, token = accounts.user_create(username=name, role=role, password=password)
        except ValueError as exc:
            raise CommandError(str(exc), returncode=2) from exc
        self.stdout.write(f"Created {role} {user.username!r}.")
        if role == "client":
            self.stdout.write("API token (shown once; stored hashed):")
            assert token is not None  # user_create makes a token for every client
            self.stdout.write(token)
        elif password is None:
            self.stdout.write(f"Password: {password_used}")
