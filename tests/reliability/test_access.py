"""Who may reach what: every route of the URL resolver against anonymous visitors, reviewers, admins and API
clients; clients kept apart (their patches and their tasks); tokens hashed, expiring and revocable; `check
--deploy` clean in production. The matrix goes into the report as a table by endpoint and role.

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
#: Open to everyone: logging in and out, the load balancer's probe (up or down and the queue depth only; the
#: detail is for admins), the root redirect. The API's description is public too: it holds no data, and clients
#: build on it before they have a token.
PUBLIC = {
    *("/", "/accounts/login/", "/accounts/logout/", "/admin/logout/", "/healthz"),
    *("/api/schema/", "/api/docs/"),
}
#: For a scraper with the metrics token or from an allowed address, none of which the matrix's roles have.
SCRAPER_ONLY = ("/metrics",)
ADMIN_ONLY = ("/weights/", "/exports/", "/admin/", "/api/v1/weights/", "/api/v1/exports/")
REVIEW_PAGES = ("/review/", "/dashboard/")
CLIENT_APIS = ("/api/v1/tasks/", "/api/v1/patches/", "/api/v1/rewards/")
#: The admin site's own per-model rules may refuse an admin too (read-only models have no add or delete page;
#: autocomplete refuses a request that names no model).
ADMIN_MODEL_PAGES = re.compile(r"^/admin/(autocomplete/|\w+/\w+/)")


def _walk(patterns, prefix: str = ""):
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
    """The roles docs/contract.md lets through to `url` (anonymous users only reach PUBLIC)."""
    if url in PUBLIC:
        return {"anonymous", "reviewer", "admin", "client"}
    if url in SCRAPER_ONLY:
        return set()
    if url.startswith(ADMIN_ONLY):
        return {"admin"}
    if url.startswith(REVIEW_PAGES):
        return {"reviewer", "admin"}
    if url.startswith(CLIENT_APIS):
        return {"client", "admin", "reviewer"} if method == "get" else {"client", "admin"}
    pytest.fail(f"{url} is in no access class of this test: decide who may reach it and add it above")


def endpoint(url: str) -> str:
    """The endpoint a URL belongs to, for the report's table: /api/v1/<name>/, /accounts/<page>/, /admin/<page>/
    (the admin's model pages folded into one row), the first path segment elsewhere."""
    parts = [p for p in url.split("/") if p]
    if not parts:
        return "/"
    if parts[0] == "admin":
        return "/admin/ (every model page)" if len(parts) > 2 else "/" + "/".join(parts[:2]) + "/"
    keep = 3 if parts[0] == "api" and len(parts) > 2 else 2 if parts[0] in ("api", "accounts") else 1
    tail = "/" if url.endswith("/") or len(parts) > keep else ""
    return "/" + "/".join(parts[:keep]) + tail


def verdict(url: str, response) -> str:
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
    matrix: dict[str, dict[str, set[str]]] = {}
    for url in urls:
        method = method_of(url, sessions["admin"])
        allowed = audience(url, method)
        for role, client in sessions.items():
            got = verdict(url, getattr(client, method)(url))
            if url in PUBLIC:
                expected = {"ok", "login"}  # logging out ends on the login page
            elif url in SCRAPER_ONLY:
                expected = {"denied"}
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
            matrix.setdefault(f"{method.upper()} {endpoint(url)}", {}).setdefault(role, set()).add(got)
    assert len(urls) > 60
    assert wrong == [], "\n".join(wrong)
    report.inputs_tried(len(urls) * len(sessions), server_errors=counts.get("error", 0))
    report.matrix(
        "Access matrix",
        "Every route of the URL resolver, grouped by endpoint; each cell is what the role got: `ok` (served), "
        "`login` (sent to the login page), `denied` (401/403). No cell holds an error (5xx).",
        columns=list(sessions),
        rows={name: {role: "/".join(sorted(got)) for role, got in cells.items()} for name, cells in matrix.items()},
    )
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


def _register(api, name: str, tmp_path, *, shared: bool | None = None) -> int:
    """Register the tiny fixture under `name` through POST /api/v1/tasks/ as `api`'s account; the status."""
    import json

    from scoring.core.trees import pack_tree
    from tests.helpers import TINY

    spec = {"name": name, "test_command": "python -m pytest -q tests", "hidden_test_command": "pytest -q hidden_x"}
    if shared is not None:
        spec["shared"] = shared
    folder = tmp_path / name
    folder.mkdir()
    repo = pack_tree(TINY / "repo", folder / "repo.tar.gz")
    hidden = pack_tree(TINY / "hidden", folder / "hidden.tar.gz")
    with repo.open("rb") as r, hidden.open("rb") as h:
        response = api.post(
            "/api/v1/tasks/", {"spec": json.dumps(spec), "repo": r, "hidden_tests": h}, format="multipart"
        )
    return response.status_code


def test_a_client_sees_and_scores_only_its_own_and_shared_tasks(make_user, fix_diff, tmp_path, report):
    from rest_framework.test import APIClient

    apis = {}
    for name, role in (("alice", "client"), ("bob", "client"), ("ada", "admin"), ("rita", "reviewer")):
        _, token = make_user(name, role)
        if token is None:
            from scoring.accounts import token_create

            token = token_create(user=_user(name))
        apis[name] = APIClient()
        apis[name].credentials(HTTP_AUTHORIZATION=f"Token {token}")
    alice, bob = apis["alice"], apis["bob"]
    assert _register(alice, "alice-private", tmp_path) == 201
    assert _register(alice, "alice-shared", tmp_path, shared=True) == 201
    assert _register(bob, "bob-bad-shared", tmp_path, shared="yes") == 400  # not a boolean

    def names(api) -> set[str]:
        return {t["name"] for t in api.get("/api/v1/tasks/").json()["results"]}

    assert names(alice) == {"alice-private", "alice-shared"}
    assert names(bob) == {"alice-shared"}
    assert names(apis["ada"]) == names(apis["rita"]) == {"alice-private", "alice-shared"}
    # Bob cannot read, score (one, a batch, or rewards) the private task: it does not exist for him.
    assert bob.get("/api/v1/tasks/alice-private/").status_code == 404
    one = bob.post("/api/v1/patches/", {"task": "alice-private", "diff": fix_diff}, format="json")
    assert one.status_code == 400 and "unknown task" in one.json()["detail"]
    many = bob.post("/api/v1/patches/", [{"task": "alice-private", "diff": fix_diff}], format="json")
    assert many.status_code == 202 and many.json()[0]["status"] == "error"
    rewards = {"task": "alice-private", "completions": [fix_diff], "wait_s": 0}
    assert bob.post("/api/v1/rewards/", rewards, format="json").status_code == 400
    assert bob.get("/api/v1/patches/", {"task": "alice-private"}).json()["count"] == 0
    # The shared task: Bob scores it, without its hidden tests' hash or hidden command; its owner sees both.
    assert bob.post("/api/v1/patches/", {"task": "alice-shared", "diff": fix_diff}, format="json").status_code == 202
    seen_by_bob = bob.get("/api/v1/tasks/alice-shared/").json()
    assert seen_by_bob["hidden_sha256"] == "" and "hidden_test_command" not in seen_by_bob["spec"]
    assert seen_by_bob["shared"] is True
    seen_by_alice = alice.get("/api/v1/tasks/alice-shared/").json()
    assert len(seen_by_alice["hidden_sha256"]) == 64 and seen_by_alice["spec"]["hidden_test_command"]
    assert (
        apis["ada"].post("/api/v1/patches/", {"task": "alice-private", "diff": fix_diff}, format="json").status_code
        == 202
    )
    report.record(
        "Access",
        "tenants: a client listing, reading and scoring (one patch, a batch, /rewards/) another client's private "
        "task, and reading a shared one; admins and reviewers listing all",
        times=9,
        outcome="private tasks do not exist for other clients (404 / unknown task / error item); shared tasks are "
        "scored by others without their hidden tests' hash or command; admins and reviewers see every task",
    )


def _user(name: str):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=name)


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
