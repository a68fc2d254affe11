"""Seats on queue items: priority, leases, labels_per_item, and no double claim under real concurrency."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from labeling import services
from labeling.models import Claim
from scoring.core.critics.registry import CRITERIA
from scoring.models import PatchStatus
from tests.labeling.factories import queued_patch


@pytest.fixture
def reviewers(make_user):
    return [make_user(f"rev{i}", "reviewer")[0] for i in range(6)]


@pytest.mark.django_db
def test_next_gives_the_least_confident_item_then_the_oldest(reviewers):
    older = queued_patch(confidence=0.5)
    newer = queued_patch(confidence=0.5)
    unsure = queued_patch(confidence=0.2)
    got = [services.claim_next(reviewer=r).patch_id for r in reviewers[:3]]
    assert got == [unsure.pk, older.pk, newer.pk]


@pytest.mark.django_db
def test_reviewer_holds_one_item_at_a_time(reviewers):
    queued_patch()
    queued_patch()
    first = services.claim_next(reviewer=reviewers[0])
    assert services.claim_next(reviewer=reviewers[0]).patch_id == first.patch_id


@pytest.mark.django_db
def test_two_reviewers_never_get_the_same_item(reviewers):
    patch = queued_patch()
    assert services.claim_next(reviewer=reviewers[0]).patch_id == patch.pk
    assert services.claim_next(reviewer=reviewers[1]) is None
    assert services.claim_patch(patch=patch, reviewer=reviewers[1]) is None


@pytest.mark.django_db
def test_labels_per_item_two_seats_two_reviewers_then_none(reviewers):
    patch = queued_patch(labels_per_item=2)
    assert services.claim_next(reviewer=reviewers[0]).patch_id == patch.pk
    assert services.claim_next(reviewer=reviewers[1]).patch_id == patch.pk
    assert services.claim_next(reviewer=reviewers[2]) is None


@pytest.mark.django_db
def test_expired_lease_goes_to_the_next_reviewer_and_the_first_cannot_save(reviewers):
    patch = queued_patch()
    services.claim_next(reviewer=reviewers[0])
    later = timezone.now() + timedelta(seconds=services.LEASE_S + 1)
    taken = services.claim_next(reviewer=reviewers[1], now=later)
    assert taken.patch_id == patch.pk
    assert services.claim_renew(patch_id=patch.pk, reviewer=reviewers[0]) is None
    with pytest.raises(services.LabelConflict, match="another reviewer took it"):
        services.label_submit(patch=patch, reviewer=reviewers[0], scores={n: 0.5 for n in CRITERIA})


@pytest.mark.django_db
def test_renewing_keeps_the_seat_past_the_original_lease(reviewers):
    patch = queued_patch()
    services.claim_next(reviewer=reviewers[0])
    soon = timezone.now() + timedelta(seconds=services.LEASE_S - 5)
    assert services.claim_renew(patch_id=patch.pk, reviewer=reviewers[0], now=soon) is not None
    after_first_lease = soon + timedelta(seconds=10)
    assert services.claim_next(reviewer=reviewers[1], now=after_first_lease) is None


@pytest.mark.django_db
def test_expired_seat_nobody_took_is_still_yours(reviewers):
    patch = queued_patch()
    services.claim_next(reviewer=reviewers[0])
    Claim.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
    assert services.claim_renew(patch_id=patch.pk, reviewer=reviewers[0]) is not None
    event = services.label_submit(patch=patch, reviewer=reviewers[0], scores={n: 0.5 for n in CRITERIA})
    assert event.pk


@pytest.mark.django_db
def test_skipped_item_is_released_and_not_offered_again(reviewers):
    skipped = queued_patch(confidence=0.1)
    other = queued_patch(confidence=0.9)
    services.claim_next(reviewer=reviewers[0])
    assert services.claim_release(patch_id=skipped.pk, reviewer=reviewers[0])
    assert services.claim_next(reviewer=reviewers[0], skip=[skipped.pk]).patch_id == other.pk
    assert services.claim_next(reviewer=reviewers[1]).patch_id == skipped.pk


@pytest.mark.django_db
def test_labelled_item_is_not_offered_to_the_same_reviewer_again(reviewers):
    patch = queued_patch(labels_per_item=2)
    services.claim_next(reviewer=reviewers[0])
    services.label_submit(patch=patch, reviewer=reviewers[0], scores={n: 0.5 for n in CRITERIA})
    assert services.claim_next(reviewer=reviewers[0]) is None
    assert services.claim_next(reviewer=reviewers[1]).patch_id == patch.pk


def _race(users, target) -> list:
    """Run `target(user)` for every user at the same moment, each thread on its own connection."""
    barrier = threading.Barrier(len(users))
    results: list = [None] * len(users)
    errors: list = []

    def run(index: int, user) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = target(user)
        except Exception as exc:  # surfaced below; a thread must not swallow a failure
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, u)) for i, u in enumerate(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_reviewers_never_double_book_a_seat(reviewers):
    single = [queued_patch(confidence=0.1 * i) for i in range(1, 3)]
    double = queued_patch(confidence=0.05, labels_per_item=2)
    claims = _race(reviewers, lambda user: services.claim_next(reviewer=user))
    won = [c.patch_id for c in claims if c is not None]
    assert sorted(won) == sorted([double.pk, double.pk, *(p.pk for p in single)])
    assert Claim.objects.count() == 4
    assert Claim.objects.filter(patch=double).values("reviewer").distinct().count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_takeover_of_an_expired_seat_has_one_winner(reviewers):
    patch = queued_patch()
    services.claim_next(reviewer=reviewers[0])
    Claim.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
    claims = _race(reviewers[1:], lambda user: services.claim_patch(patch=patch, reviewer=user))
    assert len([c for c in claims if c is not None]) == 1
    assert Claim.objects.filter(patch=patch).count() == 1
    assert patch.status == PatchStatus.NEEDS_REVIEW
