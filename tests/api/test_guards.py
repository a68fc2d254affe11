"""Guards around the service: the sign-in throttle (django-axes), who may read /healthz's detail and /metrics, and
the Content-Security-Policy and HTTPS headers."""

from __future__ import annotations

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery"


def sign_in(username: str, password: str, address: str = "127.0.0.2"):
    return Client(REMOTE_ADDR=address).post("/accounts/login/", {"username": username, "password": password})


def signed_in(response) -> bool:
    return response.status_code == 302 and not response["Location"].startswith("/accounts/login/")


# --- sign-in throttle ------------------------------------------------------------------------------------------


def test_wrong_passwords_in_a_row_lock_the_account_even_for_the_right_password(make_user, settings):
    make_user("ada", "admin")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert sign_in("ada", "wrong-guess").status_code == 200  # the form again, with its error
    assert sign_in("ada", "wrong-guess").status_code == 429  # the last allowed failure locks
    locked = sign_in("ada", PASSWORD)
    assert locked.status_code == 429 and not signed_in(locked)
    assert "Too many sign-in attempts" in locked.content.decode()
    # From another address too: the account itself is locked, not only the address that guessed.
    assert sign_in("ada", PASSWORD, address="10.9.9.9").status_code == 429


def test_one_address_guessing_many_accounts_is_locked_out_of_all_of_them(make_user, settings):
    make_user("rita", "reviewer")
    for i in range(settings.AXES_FAILURE_LIMIT):
        sign_in(f"nobody-{i}", "guess", address="127.0.0.3")  # a different account each time
    assert sign_in("rita", PASSWORD, address="127.0.0.3").status_code == 429
    assert signed_in(sign_in("rita", PASSWORD, address="10.7.7.7"))  # the account is fine elsewhere


def test_a_success_before_the_limit_resets_the_count(make_user, settings):
    make_user("rolf", "reviewer")
    for _ in range(2):
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            sign_in("rolf", "wrong-guess")
        assert signed_in(sign_in("rolf", PASSWORD))


def test_an_admin_sees_the_lockout_in_the_admin_and_lifting_it_lets_the_account_in(make_user, settings):
    from axes.models import AccessAttempt

    make_user("ada", "admin")
    admin, _ = make_user("root", "admin")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in("ada", "wrong-guess")
    page = Client()
    page.force_login(admin)
    listing = page.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and "ada" in listing.content.decode()
    AccessAttempt.objects.filter(username="ada").delete()  # what the admin's delete action does
    assert signed_in(sign_in("ada", PASSWORD))


# --- operations endpoints ------------------------------------------------------------------------------------


def test_healthz_tells_anonymous_callers_up_or_down_and_the_queue_depth_only(make_user, redis_server):
    body = Client().get("/healthz").json()
    assert set(body) == {"status", "queue_depth"}
    assert body["status"] in ("ok", "error") and body["queue_depth"] == 0
    for role in ("client", "reviewer"):
        user, _ = make_user(f"h-{role}", role)
        page = Client()
        page.force_login(user)
        assert set(page.get("/healthz").json()) == {"status", "queue_depth"}
    admin, _ = make_user("h-admin", "admin")
    page = Client()
    page.force_login(admin)
    detail = page.get("/healthz").json()
    assert {"database", "broker", "worker_heartbeat", "workers", "took_s", "queue_depth"} <= set(detail)


def test_metrics_need_the_token_or_an_allowed_address(make_user, settings):
    settings.METRICS_TOKEN = "scrape-secret-123"
    settings.METRICS_ALLOW = ["192.0.2.0/24"]
    admin, _ = make_user("m-admin", "admin")
    signed = Client()
    signed.force_login(admin)
    refused = [
        Client().get("/metrics"),
        Client(HTTP_AUTHORIZATION="Bearer wrong").get("/metrics"),
        Client(HTTP_AUTHORIZATION="Bearer scrape-secret-12").get("/metrics"),
        Client(HTTP_AUTHORIZATION="scrape-secret-123").get("/metrics"),
        Client(REMOTE_ADDR="198.51.100.7").get("/metrics"),
        Client(HTTP_X_FORWARDED_FOR="192.0.2.5").get("/metrics"),  # a header anyone can write
        signed.get("/metrics"),  # a session is no scraper
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert b"reviewapp_queue_depth" not in refused[0].content
    for allowed in (
        Client(HTTP_AUTHORIZATION="Bearer scrape-secret-123").get("/metrics"),
        Client(REMOTE_ADDR="192.0.2.77").get("/metrics"),
    ):
        assert allowed.status_code == 200 and b"reviewapp_queue_depth" in allowed.content
    settings.METRICS_TOKEN, settings.METRICS_ALLOW = "", []
    assert Client(HTTP_AUTHORIZATION="Bearer ").get("/metrics").status_code == 403  # nothing configured: nobody


# --- headers ---------------------------------------------------------------------------------------------------


def test_every_page_carries_a_csp_without_unsafe_inline_or_eval_and_inline_scripts_carry_its_nonce(make_user):
    admin, _ = make_user("c-admin", "admin")
    page = Client()
    page.force_login(admin)
    for url in ("/accounts/login/", "/review/", "/dashboard/", "/weights/", "/exports/", "/api/docs/"):
        client = Client() if url == "/accounts/login/" else page
        response = client.get(url)
        assert response.status_code == 200, url
        policy = response["Content-Security-Policy"]
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, policy
        assert "object-src 'none'" in policy and "frame-ancestors 'none'" in policy
        # django-csp adds the nonce to the header only when the page used it, i.e. has an inline script or style.
        nonce = re.search(r"'nonce-([^']+)'", policy)
        html = response.content.decode()
        for tag in re.findall(r"<(?:script|style)\b[^>]*>", html):
            if "src=" not in tag and "application/json" not in tag:  # JSON data blocks never run
                assert nonce and f'nonce="{nonce.group(1)}"' in tag, f"{url}: inline {tag} without the nonce"
        assert not re.search(r"\son[a-z]+=", html), f"{url} has an inline event handler"


def test_production_sends_hsts_and_secure_cookies(tmp_path):
    import os
    import secrets
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DATABASE_URL")}
    env.update(REVIEWAPP_ENV="production", SECRET_KEY=secrets.token_urlsafe(50), REVIEWAPP_DATA_DIR=str(tmp_path))
    code = (
        "from django.conf import settings as s; "
        "print(s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, "
        "'Content-Security-Policy' if 'csp.middleware.CSPMiddleware' in s.MIDDLEWARE else '')"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-5:] == ["31536000", "True", "True", "True", "Content-Security-Policy"]
