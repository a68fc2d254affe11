"""The status machine, the reconciler, the attempt cap, health and metrics, accounts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from scoring import services
from scoring.models import Patch, PatchStatus
from scoring.services import lifecycle

pytestmark = pytest.mark.django_db


@pytest.fixture
def patch(tiny_task, fix_diff, make_user):
    user, _ = make_user("trainer2", "client")
    return services.patch_submit(client=user, task=tiny_task, diff=fix_diff).patch


def test_only_one_of_two_claims_wins(patch):
    first = services.patch_claim(patch_id=patch.pk, token="delivery-1", lease_s=60, stage="exec")
    second = services.patch_claim(patch_id=patch.pk, token="delivery-2", lease_s=60, stage="exec")
    assert first is not None and first.status == PatchStatus.RUNNING
    assert second is None
    assert Patch.objects.get(pk=patch.pk).attempts == 1


def test_a_redelivery_of_the_same_message_takes_the_lease_back(patch):
    services.patch_claim(patch_id=patch.pk, token="delivery-1", lease_s=600, stage="exec")
    again = services.patch_claim(patch_id=patch.pk, token="delivery-1", lease_s=600, stage="exec")
    assert again is not None
    assert again.attempts == 2


def test_an_expired_lease_can_be_claimed_by_another_delivery(patch):
    services.patch_claim(patch_id=patch.pk, token="delivery-1", lease_s=600, stage="exec")
    Patch.objects.filter(pk=patch.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert services.patch_claim(patch_id=patch.pk, token="delivery-2", lease_s=600, stage="exec") is not None


def test_a_poison_pill_fails_after_the_attempt_cap_with_the_reason(patch, settings):
    settings.REVIEWAPP = dict(settings.REVIEWAPP, MAX_ATTEMPTS=3)
    for attempt in range(3):
        claimed = services.patch_claim(patch_id=patch.pk, token=f"d{attempt}", lease_s=600, stage="exec")
        assert claimed is not None
        services.patch_release(patch=claimed, reason="worker lost: SIGKILL")
    assert services.patch_claim(patch_id=patch.pk, token="d9", lease_s=600, stage="exec") is None
    patch.refresh_from_db()
    assert patch.status == PatchStatus.FAILED
    assert "3 attempts" in patch.reason and "SIGKILL" in patch.reason


def test_a_clean_handoff_between_stages_is_not_an_attempt(patch):
    claimed = services.patch_claim(patch_id=patch.pk, token="d1", lease_s=600, stage="exec")
    services.patch_handoff(patch=claimed, stage="bench")
    bench = services.patch_claim(patch_id=patch.pk, token="d2", lease_s=600, stage="bench")
    assert bench is not None and bench.attempts == 1


def test_the_reconciler_requeues_stuck_patches_and_fails_those_past_the_cap(patch, settings, monkeypatch):
    sent = []
    monkeypatch.setattr(lifecycle, "enqueue_stage", lambda pk, stage=None: sent.append((pk, stage)))
    Patch.objects.filter(pk=patch.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    assert services.reconcile()["requeued"] == 1
    assert sent == [(patch.pk, "exec")]
    settings.REVIEWAPP = dict(settings.REVIEWAPP, MAX_ATTEMPTS=1)
    Patch.objects.filter(pk=patch.pk).update(attempts=1, updated_at=timezone.now() - timedelta(hours=1))
    assert services.reconcile()["failed"] == 1
    assert Patch.objects.get(pk=patch.pk).status == PatchStatus.FAILED


def test_illegal_transitions_are_refused(patch):
    with pytest.raises(ValueError, match="not a status transition"):
        services.patch_transition(patch_id=patch.pk, source=("queued",), target="scored")


@pytest.fixture
def admin_page(client, make_user):
    """The test client signed in as an admin: /healthz gives its detail to admins only."""
    admin, _ = make_user("health-admin", "admin")
    client.force_login(admin)
    return client


def test_healthz_is_503_naming_the_broker_when_redis_is_down(admin_page, settings, tmp_path):
    client = admin_page
    settings.REDIS_URL = f"redis+socket://{tmp_path}/nothing.sock"
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok"
    assert body["broker"].startswith("error")
    assert "queue_depth" in body


def test_healthz_is_200_with_a_live_worker_heartbeat(admin_page, redis_server):
    from scoring.health import HEARTBEAT_KEY, redis_client

    client = admin_page

    redis_client().set(HEARTBEAT_KEY + "test-host", "1", ex=30)
    try:
        response = client.get("/healthz")
        assert response.status_code == 200, response.json()
        assert "test-host" in response.json()["workers"]
    finally:
        redis_client().delete(HEARTBEAT_KEY + "test-host")


def test_metrics_expose_queue_depth_and_patches_by_status(client, patch, settings):
    settings.METRICS_TOKEN = "scrape-token"
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token").content.decode()
    assert "reviewapp_queue_depth 1.0" in text
    assert 'reviewapp_patches{status="queued"} 1.0' in text


def test_create_user_prints_a_working_token_alone_on_the_last_line(capsys):
    from rest_framework.test import APIClient

    call_command("create_user", "bot", "--role", "client")
    token = capsys.readouterr().out.strip().splitlines()[-1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/patches/").status_code == 200


def test_tokens_are_stored_hashed_and_can_be_revoked(make_user):
    from knox.models import AuthToken
    from rest_framework.test import APIClient

    from scoring.accounts import tokens_revoke

    user, token = make_user("bot2", "client")
    assert not AuthToken.objects.filter(digest=token).exists()
    assert token not in str(list(AuthToken.objects.values_list("digest", "token_key")))
    tokens_revoke(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/patches/").status_code == 401


def test_create_user_refuses_a_duplicate_name_with_exit_code_2(make_user):
    from django.core.management.base import CommandError

    make_user("dup", "reviewer")
    with pytest.raises(CommandError, match="already exists") as excinfo:
        call_command("create_user", "dup", "--role", "reviewer")
    assert excinfo.value.returncode == 2


def test_an_admin_manages_accounts_and_tokens_in_the_admin_site(client, make_user):
    admin, _ = make_user("ada", "admin")
    client.force_login(admin)
    for page in ("/admin/auth/user/", "/admin/auth/group/", "/admin/knox/authtoken/", "/admin/scoring/task/"):
        assert client.get(page).status_code == 200, page
