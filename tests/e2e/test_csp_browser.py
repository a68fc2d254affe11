"""Every page works under the Content-Security-Policy in a real Chromium: htmx swaps, the vendored scripts,
Chart.js and Swagger UI run, and nothing is refused (the `new_page` fixture fails the test on any refusal)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_pages_run_their_scripts_under_the_csp_and_an_injected_inline_script_does_not(make_user, new_page):
    make_user("ada", "admin")
    page = new_page("ada")
    assert page.evaluate("typeof window.htmx") == "object"  # the vendored htmx ran
    for path, ready in (
        ("/dashboard/", "canvas"),
        ("/weights/", "canvas"),
        ("/exports/", "form"),
        ("/api/docs/", ".swagger-ui .info"),  # Swagger UI built its page from its own script file
    ):
        page.goto(path)
        page.wait_for_selector(ready)
    assert page.evaluate("typeof window.Chart") in ("undefined", "function")
    page.goto("/weights/")
    assert page.evaluate("typeof window.Chart") == "function"  # the vendored Chart.js ran
    # What an XSS would try: an inline script without the nonce, added to the page, is refused and does not run.
    page.evaluate(
        """() => { const s = document.createElement('script'); s.textContent = 'window.pwned = 1';
                   document.body.appendChild(s); }"""
    )
    assert page.evaluate("window.pwned") is None
    page.wait_for_timeout(200)  # console messages arrive asynchronously
    refused = [new_page.refused.pop() for _ in range(len(new_page.refused))]
    assert len(refused) == 1 and "inline script" in refused[0], refused
