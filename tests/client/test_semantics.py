"""The reward semantics: what each patch status is worth to a trainer, read from the one table the service and
every adapter share (reviewapp_client.semantics)."""

from __future__ import annotations

import json

import pytest
from reviewapp_client.semantics import FINAL, JUDGED, PENDING, reward_for

from scoring.models import ACTIVE_STATUSES, JUDGED_STATUSES, TERMINAL_STATUSES, Patch, PatchStatus


def _rewards(api, completions, external_ids):
    body = {"task": "tiny", "completions": completions, "external_ids": external_ids, "wait_s": 0}
    response = api.post("/api/v1/rewards/", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.django_db
def test_a_crashed_or_cancelled_patch_gives_no_reward_while_an_unusable_diff_gives_zero(api, tiny_task, fix_diff):
    keys = ["crash", "cancel", "garbage", "pending"]
    first = _rewards(api, [fix_diff, fix_diff.replace("1", "2"), "no diff at all", fix_diff + "\n"], keys)
    assert first["status"] == ["queued", "queued", "rejected", "queued"]
    crashed, cancelled, _, _ = first["ids"]
    # Infrastructure outcomes: the worker died past the retry cap, the client cancelled.
    Patch.objects.filter(pk=crashed).update(status=PatchStatus.FAILED)
    assert api.delete(f"/api/v1/patches/{cancelled}/").status_code == 200

    again = _rewards(api, [fix_diff, fix_diff.replace("1", "2"), "no diff at all", fix_diff + "\n"], keys)
    assert again["ids"] == first["ids"]
    assert again["status"] == ["failed", "cancelled", "rejected", "queued"]
    # A crash must not train as a bad patch: None (leave it out), never 0.0. Only the unusable diff is 0.0.
    assert again["rewards"] == [None, None, 0.0, None]


def test_reward_table_covers_every_status_the_service_has():
    statuses = {choice.value for choice in PatchStatus}
    assert statuses == FINAL | PENDING
    for status in statuses:
        reward_for(status, 0.7)  # no status is unknown to the table
    assert [reward_for(s, 0.7) for s in ("scored", "needs_review", "reviewed")] == [0.7] * 3
    assert reward_for("scored", 0.7, withheld=True) is None
    with pytest.raises(ValueError, match="unknown patch status 'bogus'"):
        reward_for("bogus", 0.7)


def test_the_client_reads_the_status_sets_as_the_service_defines_them():
    assert (FINAL, JUDGED, PENDING) == (TERMINAL_STATUSES, JUDGED_STATUSES, ACTIVE_STATUSES)
