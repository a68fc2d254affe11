"""The review page shows the discriminator's counterexamples beside the diff, as text."""

from __future__ import annotations

import pytest

from tests.labeling.factories import queued_patch, subscore

pytestmark = pytest.mark.django_db

VERDICT = {
    "ran": True,
    "seed": 18,
    "inputs": 300,
    "disagree": 41,
    "counterexamples": [
        {
            "entry": "intervals:merge",
            "call": "merge([(1, 5), (2, 3)])",
            "patch": "the patch returns [(1, 3)]",
            "reference": "the reference [(1, 5)]",
        }
    ],
}


def test_review_page_shows_counterexamples_beside_the_diff(client, make_user):
    reviewer, _ = make_user("rita", "reviewer")
    client.force_login(reviewer)
    patch = queued_patch(subscores={"correctness": subscore("correctness", 0.14, discriminator=VERDICT)})
    html = client.get(f"/review/{patch.pk}/").content.decode()
    block = html[html.index('aria-label="Counterexamples"') :]
    assert (
        html.index('aria-label="Diff"')
        < html.index('aria-label="Counterexamples"')
        < html.index('aria-label="Criteria"')
    )
    assert "41 of 300 generated inputs disagree" in block
    assert "merge([(1, 5), (2, 3)])" in block and "the patch returns [(1, 3)]" in block


def test_counterexample_text_from_the_patch_renders_as_text(client, make_user):
    reviewer, _ = make_user("rita", "reviewer")
    client.force_login(reviewer)
    hostile = {**VERDICT["counterexamples"][0], "patch": "the patch returns '<script>alert(1)</script>'"}
    patch = queued_patch(
        subscores={
            "correctness": subscore("correctness", 0.14, discriminator={**VERDICT, "counterexamples": [hostile]})
        }
    )
    html = client.get(f"/review/{patch.pk}/").content.decode()
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)" in html


def test_no_counterexample_block_without_a_discriminator_verdict(client, make_user):
    reviewer, _ = make_user("rita", "reviewer")
    client.force_login(reviewer)
    patch = queued_patch()
    assert 'aria-label="Counterexamples"' not in client.get(f"/review/{patch.pk}/").content.decode()
