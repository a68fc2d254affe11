"""Accounts: users in role groups, and API tokens (stored hashed by django-rest-knox, with expiry)."""

from __future__ import annotations

import secrets
from typing import Any

from axes.backends import AxesStandaloneBackend
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from knox.models import AuthToken

from scoring.roles import ROLES, ensure_groups


def user_create(*, username: str, role: str, password: str | None = None) -> tuple[Any, str, str | None]:
    """Create a user in `role`'s group; returns (user, password, token). Clients get a token, not a password.

    Raises ValueError with a message when the role is unknown or the password too weak.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    ensure_groups()
    password = password or secrets.token_urlsafe(12)
    User = get_user_model()
    user = User(username=username, is_staff=role == "admin")
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValueError(" ".join(exc.messages)) from exc
    user.set_password(password)
    user.save()
    user.groups.add(Group.objects.get(name=role))
    token = token_create(user=user) if role == "client" else None
    return user, password, token


def token_create(*, user: Any, ttl=None) -> str:
    """A new API token for `user`; only its hash is stored, so this is the one time it can be shown."""
    _, token = AuthToken.objects.create(user=user, expiry=ttl) if ttl is not None else AuthToken.objects.create(user)
    return token


def tokens_revoke(*, user: Any) -> int:
    """Revoke every token of `user`; returns how many."""
    count, _ = AuthToken.objects.filter(user=user).delete()
    return count


class SignInThrottleBackend(AxesStandaloneBackend):
    """django-axes' lockout check for sign-ins that come with their request (the login page always passes it).

    `authenticate()` without a request is not a sign-in from the network (Django's test client, a script): there
    is no address to count it against, so it is let through to the next backend instead of raising.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


#: The demo accounts. Fixed passwords, re-set on every run, so the printed ones always work. Not for production.
DEMO_ACCOUNTS = (("reviewer", "reviewer", "review-demo-2026"), ("admin", "admin", "admin-demo-2026"))
