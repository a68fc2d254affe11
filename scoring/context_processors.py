from django.http import HttpRequest

from scoring.roles import has_role


def roles(request: HttpRequest) -> dict[str, bool]:
    """`is_admin` / `is_reviewer` for the navigation."""
    user = request.user
    return {"is_admin": has_role(user, "admin"), "is_reviewer": has_role(user, "reviewer", "admin")}
