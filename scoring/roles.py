"""The three kinds of account and what each may reach. Groups are the source of truth for roles."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from rest_framework.permissions import BasePermission

ROLES = ("reviewer", "admin", "client")


def has_role(user: AbstractBaseUser | AnonymousUser, *roles: str) -> bool:
    """True when the user is active, authenticated and in one of `roles` (superusers count as admins)."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser and "admin" in roles:
        return True
    names = getattr(user, "_role_names", None)
    if names is None:
        names = set(user.groups.values_list("name", flat=True))
        user._role_names = names  # cached for the request; groups rarely change
    return bool(names.intersection(roles))


def is_staff_reader(user) -> bool:  # type: ignore[no-untyped-def]
    """Reviewers and admins see everything about a patch, hidden tests included."""
    return has_role(user, "reviewer", "admin")


def ensure_groups() -> None:
    """Create the role groups, the admin group with every model permission (accounts, tokens, tasks in /admin/);
    safe to call twice."""
    for name in ROLES:
        group, _ = Group.objects.get_or_create(name=name)
        if name == "admin":
            group.permissions.set(Permission.objects.all())


class IsAdmin(BasePermission):
    message = "This needs an admin account."

    def has_permission(self, request, view) -> bool:  # type: ignore[no-untyped-def]
        return has_role(request.user, "admin")


class CanSubmit(BasePermission):
    message = "Only API clients and admins submit patches and tasks."

    def has_permission(self, request, view) -> bool:  # type: ignore[no-untyped-def]
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return has_role(request.user, "client", "admin", "reviewer")
        return has_role(request.user, "client", "admin")


def admin_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Anonymous visitors go to the login page; signed-in users who are not admins get 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not has_role(request.user, "admin"):
            raise PermissionDenied("The weights are for admins only.")
        return view(request, *args, **kwargs)

    return wrapper
