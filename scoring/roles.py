"""The three kinds of account and what each may reach. Groups are the source of truth for roles.

Every role check lives here: `has_role`, the page decorators (`reviewer_required`, `admin_required`) and the API
permissions (`IsAdmin`, `CanSubmit`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission, PermissionsMixin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from rest_framework.permissions import BasePermission

ROLES = ("reviewer", "admin", "client")


def has_role(user: AbstractBaseUser | AnonymousUser, *roles: str) -> bool:
    """True when the user is active, authenticated and in one of `roles` (superusers count as admins)."""
    if not user.is_authenticated or not user.is_active:
        return False
    if not isinstance(user, PermissionsMixin):  # every account model here has groups (django.contrib.auth's User)
        return False
    if user.is_superuser and "admin" in roles:
        return True
    names = getattr(user, "_role_names", None)
    if names is None:
        names = set(user.groups.values_list("name", flat=True))
        user._role_names = names  # type: ignore[attr-defined]  # cached on the request's user; groups rarely change
    return bool(names.intersection(roles))


def is_staff_reader(user) -> bool:
    """Reviewers and admins see everything about a patch, hidden tests included."""
    return has_role(user, "reviewer", "admin")


def ensure_groups() -> None:
    """Create the role groups, the admin group with every model permission (accounts, tokens, tasks in /admin/);
    safe to call twice."""
    for name in ROLES:
        group, _ = Group.objects.get_or_create(name=name)
        if name == "admin":
            group.permissions.set(Permission.objects.all())


def role_required(
    *roles: str, refusal: str
) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """A page decorator: anonymous visitors go to the login page; signed-in users in none of `roles` get 403."""

    def decorator(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, *roles):
                raise PermissionDenied(refusal)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


#: The review queue, the review pages and the dashboard.
reviewer_required = role_required("reviewer", "admin", refusal="Reviewers and admins only.")
#: The weights, exports and critic pages.
admin_required = role_required("admin", refusal="Admins only.")


class IsAdmin(BasePermission):
    message = "This needs an admin account."

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, "admin")


class CanSubmit(BasePermission):
    message = "Only API clients and admins submit patches and tasks."

    def has_permission(self, request, view) -> bool:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return has_role(request.user, "client", "admin", "reviewer")
        return has_role(request.user, "client", "admin")
