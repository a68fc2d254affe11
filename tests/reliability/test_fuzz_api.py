"""Schemathesis against /api/schema/: generated requests to every operation, as an API client and as an admin.

No request may get a 5xx, and every documented response must match the schema clients and fuzzers read. The
example counts are fixed and the generation derandomized, so the time (and the requests) are the same each run.
The diff/spec/archive validators have their own hypothesis tests (tests/scoring/core/test_fuzz_intake.py).
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from reviewapp.wsgi import application

pytestmark = [pytest.mark.fuzz, pytest.mark.reliability]

MAX_EXAMPLES = 12
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
_responses: Counter = Counter()


@pytest.fixture
def wsgi_keeps_test_connection():
    """Called straight through WSGI, Django would close the test database's connection after every request;
    detach that handler for the test, as Django's own test client does."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def role_headers(role: str, make_user) -> dict[str, str]:  # type: ignore[no-untyped-def]
    from scoring.accounts import token_create

    user, token = make_user(f"fuzz-{role}", role)
    return {"Authorization": f"Token {token or token_create(user=user)}"}


def fuzz_operation(operation, mode: GenerationMode, headers: dict[str, str], role: str) -> None:  # type: ignore[no-untyped-def]
    """MAX_EXAMPLES generated requests to one operation; raises on the first that fails a check."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:  # type: ignore[no-untyped-def]
        body = case.body if isinstance(case.body, dict) else None
        if body is not None and operation.label.endswith("/rewards/"):
            body["task"] = "tiny"  # reach the real intake, not only "unknown task"
            body["wait_s"] = 0  # nothing scores here; never wait
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        _responses[(role, response.status_code // 100)] += 1

    run()


@pytest.mark.parametrize("role", ["client", "admin"])
def test_generated_requests_never_get_a_5xx_or_a_response_that_breaks_the_schema(
    role, make_user, tiny_task, wsgi_keeps_test_connection
):
    headers = role_headers(role, make_user)
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, headers=headers)
    failures = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz_operation(operation, mode, headers, role)
            except Unsatisfiable:  # nothing to make invalid: an operation without parameters or body
                continue
            except (Exception, BaseExceptionGroup) as exc:  # every operation's failure, not only the first
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert operations >= 10
    assert failures == [], "\n\n".join(failures)


def test_the_fuzz_run_made_requests_as_both_roles_and_none_got_a_5xx(report):
    """Runs after the fuzz test (same module, later) and puts its counts into build/reliability.md."""
    assert {role for role, _ in _responses} == {"client", "admin"}, _responses
    assert not any(kind == 5 for _, kind in _responses), _responses
    for role in ("client", "admin"):
        counts = {f"{k}xx": n for (r, k), n in sorted(_responses.items()) if r == role}
        report.record(
            "Hostile input",
            f"schemathesis on every operation of /api/schema/ as {'an API client' if role == 'client' else 'an admin'}"
            f" (up to {MAX_EXAMPLES} generated requests per operation, derandomized)",
            times=sum(counts.values()),
            outcome=f"responses {counts}; no 5xx, every documented response matched the schema",
        )
