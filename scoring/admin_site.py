"""The Django admin, for admins only: a reviewer or API client who reaches /admin/ gets 403, not a login form.

Installed through `labeling.apps.ReviewAdminConfig` in place of `django.contrib.admin` (Django's documented way
to override the default site). Roles come from scoring.roles, the one source of truth for who is an admin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from scoring.roles import has_role


class ReviewAdminSite(admin.AdminSite):
    site_header = "reviewapp admin"
    site_title = "reviewapp admin"

    def has_permission(self, request: HttpRequest) -> bool:
        """Admins (the role, or superusers) may use the admin site."""
        return has_role(request.user, "admin")

    def admin_view(self, view: Callable[..., HttpResponse], cacheable: bool = False) -> Callable[..., HttpResponse]:  # type: ignore[override]  # Django's stubs type views by a private alias; same shape
        """Like Django's, but anonymous visitors go to /accounts/login/ and a signed-in account without the admin
        role is refused (403), not sent to log in."""
        wrapped = super().admin_view(view, cacheable)

        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:  # one login page for the whole site (docs/contract.md)
                return redirect_to_login(request.get_full_path())
            if not self.has_permission(request):
                raise PermissionDenied("Admins only.")
            return wrapped(request, *args, **kwargs)

        return guarded

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The admin's own login page sends visitors to /accounts/login/ and refuses signed-in non-admins instead of
        offering to switch account."""
        if not request.user.is_authenticated:
            return redirect_to_login(request.GET.get("next") or reverse("admin:index"))
        if not self.has_permission(request):
            raise PermissionDenied("Admins only.")
        return super().login(request, extra_context)


class RoleAdminMixin:
    """Model admins open to the admin role without per-model Django permissions (roles are groups)."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return has_role(request.user, "admin")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return has_role(request.user, "admin")


class ReadOnlyAdmin(RoleAdminMixin, admin.ModelAdmin):
    """Rows that change only through services (status machine, append-only events): view, never edit."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
