"""Who may reach what: every route of the URL resolver against anonymous visitors, reviewers, admins and API
clients; clients kept apart; tokens hashed, expiring and revocable; `check --deploy` clean in production.

The route list comes from the resolver itself, so a new page or endpoint is in the matrix the day it is added.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RoutePattern

from tests.reliability.conftest import ROOT

pytestmark = pytest.mark.reliability

CONVERTER_SAMPLES = {
    "int": "999999",
    "slug": "tiny",
    "str": "tiny",
    "path": "999999",
    "uuid": "0" * 8 + "-0000-0000-0000-" + "0" * 12,
}
#: Open to everyone: logging in and out, the probes of the load balancer and Prometheus, the root redirect.
#: The API's description is public too: it holds no data, and clients build on it before they have a token.
PUBLIC = {
    *("/", "/accounts/login/", "/accounts/logout/", "/admin/logout/", "/healthz", "/metrics"),
    *("/api/schema/", "/api/docs/"),
}
ADMIN_ONLY = ("/weights/", "/exports/", "/admin/", "/api/v1/weights/", "/api/v1/exports/")
REVIEW_PAGES = ("/review/", "/dashboard/")
CLIENT_APIS = ("/api/v1/tasks/", "/api/v1/patches/", "/api/v1/rewards/")
#: The admin site's own per-model rules may refuse an admin too (read-only models have no add or delete page;
#: autocomplete refuses a request that names no model).
ADMIN_MODEL_PAGES = re.compile(r"^/admin/(autocomplete/|\w+/\w+/)")


def _walk(patterns, prefix: str = ""):  # type: ignore[no-untyped-def]
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), isinstance(entry.pattern, RoutePattern)


def concrete(route: str, is_route_pattern: bool) -> str:
    """A URL that resolves to `route`, with sample values for its parameters."""
    if is_route_pattern:
        return "/" + re.sub(r"<(?:(\w+):)?\w+>", lambda m: CONVERTER_SAMPLES[m.group(1) or "str"], route)
    # Regex routes (the admin's): the first choice of a group of choices, any page for a catch-all.
    path = re.sub(r"\(\?P<\w+>([\w|]+)\)", lambda m: m.group(1).split("|")[0], route)
    path = path.replace("(?P<url>.*)", "no-such-page/").replace("^", "").replace("$", "")
    if re.search(r"[()\[\]*+?\\]", path):
        pytest.fail(f"cannot fill in the regex route {route!r}: teach concrete() its form")
    return "/" + path


def all_urls() -> list[str]:
    """Every route as a URL; the logout routes last, since they end the sessions the matrix uses."""
    urls = {concrete(route, plain) for route, plain in _walk(get_resolver().url_patterns)}
    return sorted(urls, key=lambda url: ("logout" in url, url))


def method_of(url: str, admin: Client) -> str:
    """GET, or POST for the routes that only take POST (an admin's GET answers 405)."""
    return "post" if admin.get(url).status_code == 405 else "get"


def audience(url: str, method: str) -> set[str]:
    """The roles DESIGN.md lets through to `url` (anonymous users only reach PUBLIC)."""
    if url in PUBLIC:
        return {"anonymous", "reviewer", "admin", "client"}
    if url.startswith(ADMIN_ONLY):
        return {"admin"}
    if url.startswith(REVIEW_PAGES):
        return {"reviewer", "admin"}
    if url.startswith(CLIENT_APIS):
        return {"client", "admin", "reviewer"} if method == "get" else {"client", "admin"}
    pytest.fail(f"{url} is in no access class of this test: decide who may reach it and add it above")


def verdict(url: str, response) -> str:  # type: ignore[no-untyped-def]
    """One of: login (sent to the login page), denied (401/403), error (5xx), ok (anything else)."""
    if response.status_code >= 500 and not (url == "/healthz" and response.status_code == 503):
        return "error"
    if response.status_code in (401, 403):
        return "denied"
    if response.status_code in (301, 302) and response["Location"].startswith("/accounts/login/"):
        return "login"
    return "ok"


@pytest.fixture
def sessions(make_user, tiny_task) -> dict[str, Client]:
    """A test client per role: reviewer and admin signed in, the API client with its token, and nobody."""
    clients = {"anonymous": Client()}
    for role in ("reviewer", "admin"):
        user, _ = make_user(f"matrix-{role}", role)
        clients[role] = Client()
        clients[role].force_login(user)
    _, token = make_user("matrix-client", "client")
    clients["client"] = Client(HTTP_AUTHORIZATION=f"Token {token}")
    return clients


def test_every_route_lets_in_exactly_its_audience(sessions, report):
    urls = all_urls()
    wrong = []
    counts = {"ok": 0, "login": 0, "denied": 0}
    for url in urls:
        method = method_of(url, sessions["admin"])
        allowed = audience(url, method)
        for role, client in sessions.items():
            got = verdict(url, getattr(client, method)(url))
            if url in PUBLIC:
                expected = {"ok", "login"}  # logging out ends on the login page
            elif role in allowed:
                expected = {"ok", "denied"} if role == "admin" and ADMIN_MODEL_PAGES.match(url) else {"ok"}
            elif role == "anonymous":
                expected = {"denied"} if url.startswith("/api/") else {"login"}
            elif role == "client" and not url.startswith("/api/"):
                expected = {"login"}  # a token opens the API only; pages need a signed-in person
            else:
                expected = {"denied"}
            if got not in expected:
                wrong.append(f"{method.upper()} {url} as {role}: {got}, expected {'/'.join(sorted(expected))}")
            counts[got] = counts.get(got, 0) + 1
    assert len(urls) > 60
    assert wrong == [], "\n".join(wrong)
    report.record(
        "Access",
        f"every route of the URL resolver ({len(urls)} URLs) as anonymous, reviewer, admin and API client",
        times=len(urls) * len(sessions),
        outcome=f"each role got exactly its access: {counts}; no 5xx",
    )


def test_a_client_token_does_not_sign_in_to_pages_and_a_signed_in_client_is_refused(make_user):
    user, token = make_user("page-client", "client")
    with_token = Client(HTTP_AUTHORIZATION=f"Token {token}")
    assert with_token.get("/review/")["Location"].startswith("/accounts/login/")
    signed_in = Client()
    signed_in.force_login(user)
    assert signed_in.get("/review/").status_code == 403
    assert signed_in.get("/admin/").status_code == 403


def test_one_client_cannot_see_or_cancel_another_clients_patches(make_user, tiny_task, fix_diff, report):
    from rest_framework.test import APIClient

    apis = {}
    for name in ("alice", "bob"):
        _, token = make_user(name, "client")
        apis[name] = APIClient()
        apis[name].credentials(HTTP_AUTHORIZATION=f"Token {token}")
    created = apis["alice"].post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff, "external_id": "k1"})
    assert created.status_code == 202, created.content
    pk = created.json()["id"]
    bob = apis["bob"]
    assert bob.get(f"/api/v1/patches/{pk}/").status_code == 404
    assert bob.delete(f"/api/v1/patches/{pk}/").status_code == 404
    assert bob.get("/api/v1/patches/").json()["count"] == 0
    assert bob.get(f"/api/v1/patches/?ids={pk}").json()["results"] == []
    # The same external_id is Bob's own key: a new patch, not Alice's.
    again = bob.post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff, "external_id": "k1"})
    assert again.status_code == 202 and again.json()["id"] != pk
    assert apis["alice"].get(f"/api/v1/patches/{pk}/").status_code == 200
    report.record(
        "Access",
        "a client reading, listing, filtering by id and cancelling another client's patch; reusing its key",
        times=5,
        outcome="404 / empty lists; the reused external_id made the second client's own patch",
    )


def test_tokens_are_stored_hashed_expire_and_can_be_revoked(make_user, report):
    from knox.models import AuthToken
    from rest_framework.test import APIClient

    from scoring.accounts import token_create, tokens_revoke

    user, token = make_user("tokens", "client")
    stored = AuthToken.objects.get(user=user)
    assert token not in (stored.digest, stored.token_key) and len(stored.token_key) < len(token)
    assert stored.expiry is not None  # every token expires

    def status_with(raw: str) -> int:
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
        return api.get("/api/v1/tasks/").status_code

    assert status_with(token) == 200
    assert status_with(token[:-1] + ("A" if token[-1] != "A" else "B")) == 401
    expired = token_create(user=user, ttl=timedelta(seconds=-1))  # expired a second ago
    assert status_with(expired) == 401
    assert tokens_revoke(user=user) >= 1
    assert status_with(token) == 401
    report.record(
        "Access",
        "API tokens: the database row, a token with one character changed, an expired token, a revoked token",
        times=4,
        outcome="only a hash and a short prefix are stored, every token has an expiry; altered, expired and "
        "revoked tokens get 401",
    )


def test_check_deploy_is_clean_under_production_settings(tmp_path, report):
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DATABASE_URL", "REDIS_URL")}
    env.update(
        REVIEWAPP_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="reviewapp.example.org",
        REVIEWAPP_DATA_DIR=str(tmp_path),
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout, done.stdout + done.stderr
    report.record(
        "Access",
        "`manage.py check --deploy --fail-level WARNING` with REVIEWAPP_ENV=production",
        times=1,
        outcome="no issues",
    )
