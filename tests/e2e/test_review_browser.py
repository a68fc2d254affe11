"""A reviewer's session in a real Chromium: claim, correct with the keyboard, submit, next; two reviewers at
once; attacker text in a diff stays text."""

from __future__ import annotations

import re

import pytest

from labeling.models import Claim, LabelEvent
from scoring.core.critics.registry import CRITERIA
from tests.e2e.conftest import screenshot
from tests.labeling.factories import SAMPLE_DIFF, queued_patch

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_reviewer_corrects_two_criteria_with_the_keyboard_and_lands_on_the_next_item(make_user, new_page):
    make_user("rita", "reviewer")
    first = queued_patch(confidence=0.3)
    second = queued_patch(confidence=0.6)
    page = new_page("rita")
    screenshot(page, "queue")
    page.get_by_role("button", name=re.compile(r"^Next")).click()
    page.wait_for_url(f"**/review/{first.pk}/")
    before = page.locator("#live-final").inner_text()

    page.keyboard.press("j")  # first criterion
    page.keyboard.press("3")  # 0.3
    page.keyboard.press("j")  # second criterion
    page.keyboard.press("l")  # +0.05
    page.keyboard.press("l")  # +0.05 -> 0.70
    assert page.locator(f"#score-{CRITERIA[0]}").input_value() == "0.3"
    assert page.locator(f"#score-{CRITERIA[1]}").input_value() == "0.7"
    assert page.locator("#live-final").inner_text() != before

    page.keyboard.press("?")
    dialog = page.get_by_role("dialog")
    assert dialog.is_visible()
    assert "next / previous criterion" in dialog.inner_text()
    screenshot(page, "review-help")
    page.keyboard.press("Escape")
    assert not dialog.is_visible()
    screenshot(page, "review-corrected")

    page.keyboard.press("Control+Enter")
    page.wait_for_url(f"**/review/{second.pk}/")
    assert page.get_by_role("button", name="Submit").is_visible()
    event = LabelEvent.objects.get(patch=first)
    assert event.subscores[CRITERIA[0]]["human"] == 0.3
    assert event.subscores[CRITERIA[1]]["human"] == 0.7
    assert event.subscores[CRITERIA[2]]["human"] == event.subscores[CRITERIA[2]]["auto"]
    screenshot(page, "review-next-item")


def test_two_browser_contexts_never_hold_the_same_item(make_user, new_page):
    make_user("ann", "reviewer")
    make_user("bob", "reviewer")
    patches = {queued_patch().pk, queued_patch().pk}
    pages = [new_page("ann"), new_page("bob")]
    for page in pages:
        page.get_by_role("button", name=re.compile(r"^Next")).click()
    for page in pages:
        page.wait_for_url(re.compile(r"/review/\d+/$"))
    held = {int(re.search(r"/review/(\d+)/", page.url).group(1)) for page in pages}
    assert held == patches
    assert Claim.objects.values("patch").distinct().count() == 2
    screenshot(pages[0], "two-reviewers-ann")
    screenshot(pages[1], "two-reviewers-bob")


def test_xss_payload_inside_a_diff_shows_as_text(make_user, new_page):
    make_user("rita", "reviewer")
    payload = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 1">'
    patch = queued_patch(diff=SAMPLE_DIFF.replace('# "euclid"', f"# {payload}"))
    page = new_page("rita")
    page.goto(f"/review/{patch.pk}/")
    assert page.evaluate("window.pwned === undefined")
    assert page.get_by_text("<script>window.pwned = 1</script>", exact=False).count() >= 1
    screenshot(page, "xss-as-text")


def test_dashboard_draws_its_charts(make_user, new_page):
    make_user("rita", "reviewer")
    queued_patch()
    page = new_page("rita")
    page.goto("/dashboard/")
    page.wait_for_selector("#agreement table")
    # queue, pace, learned critic by version, then two charts per criterion
    assert page.locator("canvas").count() == 3 + 2 * len(CRITERIA)
    screenshot(page, "dashboard")
