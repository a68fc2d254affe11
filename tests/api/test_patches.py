"""Patch intake through the HTTP API: idempotency, validation, isolation, limits, enqueue on commit."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from scoring.core.intake.text import unstorable
from scoring.models import Patch
from tests.helpers import other_diff

pytestmark = pytest.mark.django_db


def test_new_patch_is_accepted_queued_and_enqueued_on_commit(
    api, tiny_task, fix_diff, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff, "external_id": "r1"}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued"
    assert Patch.objects.get(pk=response.json()["id"]).diff == fix_diff
    assert len(callbacks) == 1


def test_nothing_is_enqueued_when_the_transaction_rolls_back(
    tiny_task, fix_diff, make_user, django_capture_on_commit_callbacks
):
    from django.db import transaction

    from scoring.services import patch_submit

    user, _ = make_user("rollback", "client")
    with (
        django_capture_on_commit_callbacks(execute=False) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        patch_submit(client=user, task=tiny_task, diff=fix_diff)
        raise RuntimeError("boom")
    assert callbacks == []
    assert not Patch.objects.exists()


def test_same_external_id_and_diff_returns_the_first_patch(api, tiny_task, fix_diff):
    first = api.post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff, "external_id": "r1"}, format="json")
    again = api.post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff, "external_id": "r1"}, format="json")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert Patch.objects.count() == 1


def test_same_external_id_with_another_diff_is_a_conflict(api, tiny_task, fix_diff):
    api.post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff, "external_id": "r1"}, format="json")
    response = api.post(
        "/api/v1/patches/", {"task": "tiny", "diff": other_diff(fix_diff), "external_id": "r1"}, format="json"
    )
    assert response.status_code == 409
    assert "external_id" in response.json()["detail"]
    assert Patch.objects.count() == 1


BAD_DIFFS = {
    "empty": "",
    "not a diff": "hello world\n",
    "nul byte": "--- a/calc/__init__.py\n+++ b/calc/__init__.py\n@@ -1 +1 @@\n-x\x00\n+y\n",
    "traversal": "--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n",
    "absolute": "--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n",
    "git dir": "diff --git a/.git/config b/.git/config\n--- a/.git/config\n+++ b/.git/config\n@@ -1 +1 @@\n-a\n+b\n",
    "symlink": (
        "diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n@@ -0,0 +1 @@\n+/etc/passwd\n"
    ),
    "gitlink": (
        "diff --git a/sub b/sub\nnew file mode 160000\n--- /dev/null\n+++ b/sub\n@@ -0,0 +1 @@\n"
        "+Subproject commit 0000000000000000000000000000000000000000\n"
    ),
    "binary": "diff --git a/x.bin b/x.bin\nnew file mode 100644\nGIT binary patch\nliteral 3\nKcmZ?wV*mgE0RR91\n",
    "missing file": "--- a/nope.py\n+++ b/nope.py\n@@ -1 +1 @@\n-a\n+b\n",
    "does not apply": (
        "--- a/calc/__init__.py\n+++ b/calc/__init__.py\n@@ -1,3 +1,3 @@\n-this line is not there\n+x\n \n \n"
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_DIFFS))
def test_invalid_diff_gets_400_with_a_message_and_no_row(api, tiny_task, kind):
    response = api.post("/api/v1/patches/", {"task": "tiny", "diff": BAD_DIFFS[kind]}, format="json")
    assert response.status_code == 400, (kind, response.content)
    assert response.json()["detail"]
    assert not Patch.objects.exists()


def test_surrogates_get_400_with_a_message_and_no_row(api, tiny_task, fix_diff):
    """JSON can carry a lone surrogate ("\\ud800"), which no UTF-8 text holds: in a diff (single or in a batch)
    or in the metadata, it is refused before anything is stored."""
    broken = fix_diff.replace("+", "+\ud800", 1)

    def post(body):
        return api.post("/api/v1/patches/", data=json.dumps(body), content_type="application/json")

    response = post({"task": "tiny", "diff": broken})
    assert response.status_code == 400 and "UTF-8" in response.json()["detail"]
    response = post([{"task": "tiny", "diff": broken}, {"task": "tiny", "diff": fix_diff, "external_id": "ok"}])
    assert response.status_code == 202
    assert [item["code"] for item in response.json()] == [400, 202]
    assert "UTF-8" in response.json()[0]["detail"]
    response = post({"task": "tiny", "diff": fix_diff, "metadata": {"note": "\ud800"}})
    assert response.status_code == 400, response.content
    assert Patch.objects.count() == 1


def test_completions_no_database_could_store_are_rejected_with_reward_zero(api, tiny_task, fix_diff):
    """A completion is the agent's text: lone surrogates or NUL in it (or in the diff it holds) make it a rejected
    patch with reward 0.0, stored with those characters escaped, never a 500."""
    fenced = "```diff\n{}```"
    completions = [
        "no diff here, only a lone surrogate \ud800",
        "no diff here, only NUL \x00",
        fenced.format(fix_diff.replace("+", "+\ud800", 1)),
        fenced.format(fix_diff.replace("+", "+\x00", 1)),
    ]
    body = json.dumps({"task": "tiny", "completions": completions, "wait_s": 0})
    response = api.post("/api/v1/rewards/", data=body, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == ["rejected"] * 4
    assert response.json()["rewards"] == [0.0] * 4
    stored = list(Patch.objects.order_by("pk").values_list("diff", "reason"))
    assert stored[0][0].endswith("surrogate \\ud800") and stored[1][0].endswith("NUL \\x00")
    assert "+\\ud800" in stored[2][0] and "+\\x00" in stored[3][0]
    assert all(unstorable(text) is None for row in stored for text in row)


def test_too_large_diff_gets_413(api, tiny_task, fix_diff, settings):
    settings.LIMITS = dict(settings.LIMITS, DIFF_BYTES=200)
    response = api.post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff + "#" * 500}, format="json")
    assert response.status_code == 413
    assert not Patch.objects.exists()


def test_malformed_json_body_gets_400(api, tiny_task):
    response = api.post("/api/v1/patches/", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


def test_nul_in_a_query_parameter_gets_400_in_json(api, tiny_task):
    response = api.get("/api/v1/patches/?task=%00")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("A query parameter holds a NUL character")


def test_unknown_task_gets_400(api, tiny_task, fix_diff):
    response = api.post("/api/v1/patches/", {"task": "nope", "diff": fix_diff}, format="json")
    assert response.status_code == 400
    assert "unknown task" in json.dumps(response.json())


def test_a_batch_answers_per_item_in_order(api, tiny_task, fix_diff):
    items = [
        {"task": "tiny", "diff": fix_diff, "external_id": "a"},
        {"task": "tiny", "diff": "garbage"},
        {"task": "tiny", "diff": fix_diff, "external_id": "a"},
        {"task": "nope", "diff": fix_diff},
    ]
    response = api.post("/api/v1/patches/", items, format="json")
    assert response.status_code == 202
    codes = [item["code"] for item in response.json()]
    assert codes == [202, 400, 200, 404]
    assert Patch.objects.count() == 1


def test_a_batch_mixing_in_process_and_git_checks_keeps_every_verdict_in_order(api, tiny_task, fix_diff):
    # A plain diff (no `diff --git` line, as models often write them) is one libgit2 cannot read: git decides it,
    # in the parallel second pass, as it decides every refusal; the answers stay in the order of the items.
    plain = "".join(line for line in fix_diff.splitlines(keepends=True) if not line.startswith("diff --git"))
    assert plain != fix_diff
    items = [
        {"task": "tiny", "diff": fix_diff},
        {"task": "tiny", "diff": BAD_DIFFS["does not apply"]},
        {"task": "tiny", "diff": plain},
        {"task": "tiny", "diff": other_diff(fix_diff)},
        {"task": "tiny", "diff": BAD_DIFFS["does not apply"].replace("this line", "that line")},
    ]
    response = api.post("/api/v1/patches/", items, format="json")
    assert response.status_code == 202
    answers = response.json()
    assert [item["code"] for item in answers] == [202, 400, 202, 202, 400]
    assert all("does not apply" in answers[i]["detail"] for i in (1, 4))
    assert Patch.objects.count() == 3


def test_a_batch_of_more_than_1000_is_refused(api, tiny_task, fix_diff):
    response = api.post("/api/v1/patches/", [{"task": "tiny", "diff": fix_diff}] * 1001, format="json")
    assert response.status_code == 400
    assert "1000" in json.dumps(response.json())


def test_a_client_sees_only_its_own_patches(api, tiny_task, fix_diff, make_user):
    mine = api.post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff}, format="json").json()["id"]
    _, other_token = make_user("other", "client")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {other_token}")
    assert other.get(f"/api/v1/patches/{mine}/").status_code == 404
    assert other.get("/api/v1/patches/").json()["count"] == 0
    assert api.get("/api/v1/patches/").json()["count"] == 1


def test_too_many_queued_patches_gets_429_with_retry_after(api, tiny_task, fix_diff, settings):
    settings.REVIEWAPP = dict(settings.REVIEWAPP, MAX_QUEUED_PER_CLIENT=1)
    assert api.post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff}, format="json").status_code == 202
    response = api.post("/api/v1/patches/", {"task": "tiny", "diff": other_diff(fix_diff)}, format="json")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0


def test_cancel_a_queued_patch_then_not_again(api, tiny_task, fix_diff):
    pk = api.post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff}, format="json").json()["id"]
    assert api.delete(f"/api/v1/patches/{pk}/").json()["status"] == "cancelled"
    again = api.delete(f"/api/v1/patches/{pk}/")
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]


def test_list_filters_by_status_and_rejects_unknown_ones(api, tiny_task, fix_diff):
    api.post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff}, format="json")
    assert api.get("/api/v1/patches/?status=queued&task=tiny").json()["count"] == 1
    assert api.get("/api/v1/patches/?status=scored").json()["count"] == 0
    assert api.get("/api/v1/patches/?status=bogus").status_code == 400
    assert api.get("/api/v1/patches/?since=yesterday").status_code == 400


def test_anonymous_and_bad_tokens_are_refused(tiny_task):
    anonymous = APIClient()
    assert anonymous.get("/api/v1/patches/").status_code in (401, 403)
    anonymous.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert anonymous.get("/api/v1/patches/").status_code == 401


def test_a_reviewer_cannot_submit_patches(tiny_task, fix_diff, make_user):
    reviewer, _ = make_user("rita", "reviewer")
    client = APIClient()
    client.force_authenticate(reviewer)
    assert client.post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff}, format="json").status_code == 403


def test_list_fetches_many_results_by_id_and_refuses_junk_ids(api, tiny_task, fix_diff):
    first = api.post("/api/v1/patches/", {"task": "tiny", "diff": fix_diff}, format="json").json()["id"]
    second = api.post("/api/v1/patches/", {"task": "tiny", "diff": other_diff(fix_diff)}, format="json").json()["id"]
    listed = api.get(f"/api/v1/patches/?ids={first},{second}").json()
    assert sorted(r["id"] for r in listed["results"]) == sorted([first, second])
    assert api.get("/api/v1/patches/?ids=1,abc").status_code == 400


def _submit(api, fix_diff, keys):
    items = [{"task": "tiny", "diff": fix_diff, "external_id": key} for key in keys]
    answer = api.post("/api/v1/patches/", items, format="json")
    assert answer.status_code == 202, answer.content
    return [item["id"] for item in answer.json()]


def test_paging_the_list_while_patches_arrive_neither_skips_nor_repeats_a_row(api, tiny_task, fix_diff):
    before = _submit(api, fix_diff, [f"before-{i}" for i in range(7)])
    seen: list[int] = []
    page = api.get("/api/v1/patches/", {"limit": 3}).json()
    assert set(page) == {"count", "next", "previous", "results"}
    while True:
        seen += [result["id"] for result in page["results"]]
        # Between every two requests more patches arrive; under offset pages each of them pushed a row seen
        # already onto the next page.
        _submit(api, fix_diff, [f"during-{len(seen)}-{i}" for i in range(2)])
        if not page["next"]:
            break
        page = api.get(page["next"]).json()
    assert seen == sorted(before, reverse=True)  # every row once, newest first, none of the later ones
    assert api.get("/api/v1/patches/").json()["count"] == 7 + 2 * 3


def test_a_cursor_the_server_did_not_write_or_an_offset_gets_400(api, tiny_task, fix_diff):
    import base64

    _submit(api, fix_diff, ["a", "b"])
    for cursor in ("garbage", base64.b64encode(b"p=abc").decode(), base64.b64encode(b"p=" + b"9" * 30).decode()):
        answer = api.get("/api/v1/patches/", {"cursor": cursor})
        assert answer.status_code == 400, (cursor, answer.content)
        assert "cursor" in answer.json()["detail"]
    answer = api.get("/api/v1/patches/", {"offset": 3})
    assert answer.status_code == 400
    assert "follow `next`" in answer.json()["detail"]


def test_list_filters_are_checked_each_naming_itself_and_empty_ones_filter_nothing(api, tiny_task, fix_diff):
    first, _ = _submit(api, fix_diff, ["f1", "f2"])
    assert api.get("/api/v1/patches/?task=&status=&since=&ids=").json()["count"] == 2
    assert [r["id"] for r in api.get(f"/api/v1/patches/?ids={first}").json()["results"]] == [first]
    assert api.get("/api/v1/patches/?since=2000-01-01T00:00:00Z&task=tiny").json()["count"] == 2
    assert api.get("/api/v1/patches/?since=2999-01-01T00:00:00Z").json()["count"] == 0
    for query, name in [
        ("status=bogus", "status"),
        ("since=yesterday", "since"),
        ("ids=1,abc", "ids"),
        ("ids=" + ",".join(["1"] * 1001), "ids"),
        ("task=" + "t" * 101, "task"),
    ]:
        answer = api.get(f"/api/v1/patches/?{query}")
        assert answer.status_code == 400, query
        assert answer.json()["detail"].startswith(name), (query, answer.json())
