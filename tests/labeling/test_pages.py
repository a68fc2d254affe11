"""The review pages as a reviewer's browser sees them: access, what is shown, security headers, query counts."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from labeling import services
from labeling.models import LabelEvent
from scoring.core.critics.registry import CRITERIA
from tests.labeling.factories import SAMPLE_DIFF, queued_patch, subscore

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer(make_user):
    user, _ = make_user("rita", "reviewer")
    return user


@pytest.fixture
def browser(client, reviewer):
    client.force_login(reviewer)
    return client


@pytest.mark.parametrize("url", ["/review/", "/dashboard/", "/review/1/", "/dashboard/data/queue.json"])
def test_anonymous_visitor_is_sent_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_api_client_account_cannot_open_the_queue(client, make_user):
    user, _ = make_user("trainer", "client")
    client.force_login(user)
    assert client.get("/review/").status_code == 403


@pytest.mark.parametrize("url", ["/admin/", "/admin/labeling/labelevent/", "/admin/login/"])
def test_reviewer_gets_403_on_admin_pages(browser, url):
    assert browser.get(url).status_code == 403


def test_admin_can_browse_label_history_but_not_edit_it(client, make_user):
    admin, _ = make_user("ada", "admin")
    client.force_login(admin)
    assert client.get("/admin/labeling/labelevent/").status_code == 200
    assert client.get("/admin/labeling/labelevent/add/").status_code == 403


def test_pages_refuse_framing(browser):
    patch = queued_patch()
    for url in ("/review/", f"/review/{patch.pk}/", "/dashboard/"):
        assert browser.get(url)["X-Frame-Options"] == "DENY"


def test_queue_offers_next_button_and_lists_items_least_confident_first(browser):
    sure = queued_patch(confidence=0.9)
    unsure = queued_patch(confidence=0.3)
    html = browser.get("/review/").content.decode()
    assert re.search(r"<button[^>]*>Next item</button>", html)
    assert html.index(f"#{unsure.pk}<") < html.index(f"#{sure.pk}<")


def test_queue_filters_by_flag_and_criterion_in_doubt(browser):
    tampered = queued_patch(flags=["tamper"])
    doubtful = queued_patch(subscores={"style": subscore("style", 0.5, 0.2)})
    html = browser.get("/review/?flag=tamper").content.decode()
    assert f"#{tampered.pk}<" in html and f"#{doubtful.pk}<" not in html
    html = browser.get("/review/?doubt=style").content.decode()
    assert f"#{doubtful.pk}<" in html and f"#{tampered.pk}<" not in html


def test_next_claims_and_opens_the_review_page_with_a_slider_per_criterion(browser):
    patch = queued_patch()
    response = browser.post("/review/next/")
    assert response["Location"] == f"/review/{patch.pk}/"
    html = browser.get(response["Location"]).content.decode()
    for name in CRITERIA:
        assert f'type="range" id="score-{name}" name="score-{name}"' in html
    assert re.search(r"<button[^>]*>Submit</button>", html)
    assert 'role="dialog"' in html or "<dialog" in html
    assert "Keyboard shortcuts" in html


def test_review_page_pins_lint_findings_on_their_diff_line(browser):
    patch = queued_patch()
    html = browser.get(f"/review/{patch.pk}/").content.decode()
    # calc.py line 2 is the added `import os`; the pylint message sits right under it.
    line = html.index('<td class="ln">2</td>')
    assert html.index("Import outside toplevel (os)") > line
    assert "tests/test_calc.py::test_gcd_zero" in html  # hidden failing test, shown to reviewers
    assert 'id="series-performance"' in html  # the benchmark runs plot


def test_attacker_text_in_diff_output_and_lint_renders_as_text(browser):
    payload = "<script>alert('x')</script>"
    diff = SAMPLE_DIFF.replace('# "euclid"', f"# {payload}")
    patch = queued_patch(
        diff=diff,
        subscores={
            "correctness": subscore("correctness", failing=[{"name": payload, "output": f"{payload}\nboom"}]),
            "style": subscore("style", introduced=[{"file": "calc.py", "line": 3, "id": "C0301", "message": payload}]),
        },
    )
    patch.task.spec["test_command"] = payload
    patch.task.save()
    html = browser.get(f"/review/{patch.pk}/").content.decode()
    assert "<script>alert" not in html
    assert html.count("&lt;script&gt;") >= 3 or html.count("&lt;</span><span") >= 1


def test_blind_review_hides_other_labels_until_yours_is_in(make_user, client):
    first, _ = make_user("first", "reviewer")
    second, _ = make_user("second", "reviewer")
    patch = queued_patch(labels_per_item=2)
    for user in (first, second):
        assert services.claim_patch(patch=patch, reviewer=user)
    services.label_submit(patch=patch, reviewer=first, scores={n: 0.11 for n in CRITERIA}, comment="first-secret")
    client.force_login(second)
    assert "first-secret" not in client.get(f"/review/{patch.pk}/").content.decode()
    services.label_submit(patch=patch, reviewer=second, scores={n: 0.9 for n in CRITERIA})
    assert "first-secret" in client.get(f"/review/{patch.pk}/").content.decode()


def test_submit_saves_and_lands_on_the_next_item(browser, reviewer):
    first = queued_patch(confidence=0.2)
    second = queued_patch(confidence=0.5)
    browser.post("/review/next/")
    form = {f"score-{n}": "0.25" for n in CRITERIA} | {"comment": "too slow", "base_event": "", "opened_at": "0"}
    response = browser.post(f"/review/{first.pk}/submit/", form)
    assert response.status_code == 302
    assert response["Location"] == f"/review/{second.pk}/"
    event = LabelEvent.objects.get(patch=first)
    assert event.subscores["style"] == {"auto": 0.6, "human": 0.25, "note": ""}
    assert event.comment == "too slow"


def test_a_form_field_holding_nul_gets_400_and_nothing_is_stored(browser):
    patch = queued_patch(confidence=0.2)
    browser.post("/review/next/")
    form = {f"score-{n}": "0.25" for n in CRITERIA} | {"note-style": "a\x00b", "base_event": "", "opened_at": "0"}
    as_browsers_send = {"data": urlencode(form), "content_type": "application/x-www-form-urlencoded"}
    for sent in ({"data": form}, as_browsers_send):  # multipart, as the test client sends by default
        response = browser.post(f"/review/{patch.pk}/submit/", **sent)
        assert response.status_code == 400
        assert "NUL character" in response.content.decode()
    assert not LabelEvent.objects.exists()


def test_nul_in_a_queue_filter_gets_400(browser):
    response = browser.get("/review/?task=%00")
    assert response.status_code == 400
    assert "query parameter holds a NUL character" in response.content.decode()


def test_stale_edit_answers_409_with_a_clear_message(browser, reviewer):
    patch = queued_patch()
    services.claim_patch(patch=patch, reviewer=reviewer)
    first = services.label_submit(patch=patch, reviewer=reviewer, scores={n: 0.5 for n in CRITERIA})
    services.label_submit(patch=patch, reviewer=reviewer, scores={n: 0.4 for n in CRITERIA}, base_event_id=first.pk)
    form = {f"score-{n}": "0.9" for n in CRITERIA} | {"base_event": str(first.pk), "opened_at": "0"}
    response = browser.post(f"/review/{patch.pk}/submit/", form)
    assert response.status_code == 409
    assert "changed after you opened this page" in response.content.decode()
    assert LabelEvent.objects.filter(patch=patch).count() == 2


def test_lease_poll_stops_once_the_seat_is_gone(browser, reviewer):
    patch = queued_patch()
    services.claim_patch(patch=patch, reviewer=reviewer)
    assert browser.post(f"/review/{patch.pk}/lease/", HTTP_HX_REQUEST="true").status_code == 200
    services.claim_release(patch_id=patch.pk, reviewer=reviewer)
    response = browser.post(f"/review/{patch.pk}/lease/", HTTP_HX_REQUEST="true")
    assert response.status_code == 286
    assert "lease on this item is gone" in response.content.decode()


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_queue_and_review_pages_cost_the_same_queries_with_more_items(browser, django_assert_num_queries):
    patch = queued_patch(confidence=0.1)
    queued_patch()
    queue_cost = _queries(browser, "/review/")
    review_cost = _queries(browser, f"/review/{patch.pk}/")
    for _ in range(25):
        queued_patch()
    with django_assert_num_queries(queue_cost):
        browser.get("/review/")
    with django_assert_num_queries(review_cost):
        browser.get(f"/review/{patch.pk}/")
