"""Schemathesis against /api/schema/: generated requests to every operation, and generated sequences that follow
the schema's links (a created patch fetched and cancelled, a task registered then read...), as an API client and
as an admin.

No request may get a 5xx, and every documented response must match the schema clients and fuzzers read. The
example counts are fixed and the generation derandomized, so the time (and the requests) are the same each run.
The diff/spec/archive validators have their own hypothesis tests (tests/scoring/core/test_fuzz_intake.py); the
hostile inputs of issue 20 are named tests against the live server in test_edges_live.py.
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

MAX_EXAMPLES = 16  # was 12; with the stateful runs the suite stays within BUDGET_S on 2 cores
#: Stateful runs: sequences of up to STEPS linked calls, STATEFUL_EXAMPLES sequences per role.
STATEFUL_EXAMPLES = 25
STEPS = 6
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


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


def role_headers(role: str, make_user) -> dict[str, str]:
    from scoring.accounts import token_create

    user, token = make_user(f"fuzz-{role}", role)
    return {"Authorization": f"Token {token or token_create(user=user)}"}


def steer(case) -> None:
    """Point generated bodies at the real intake (the `tiny` task, not only "unknown task"), and never wait."""
    if isinstance(case.body, dict):
        if "task" in case.body:
            case.body["task"] = "tiny"
        if "wait_s" in case.body:
            case.body["wait_s"] = 0  # nothing is scored here


def fuzz_operation(operation, mode: GenerationMode, headers: dict[str, str]) -> Counter:
    """MAX_EXAMPLES generated requests to one operation; raises on the first that fails a check.

    Returns how many responses of each class (2xx, 4xx...) it got.
    """
    classes: Counter = Counter()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        steer(case)
        response = case.call(headers=headers)
        classes[f"{response.status_code // 100}xx"] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()
    return classes


@pytest.mark.parametrize("role", ["client", "admin"])
def test_generated_requests_never_get_a_5xx_or_a_response_that_breaks_the_schema(
    role, make_user, tiny_task, wsgi_keeps_test_connection, report
):
    headers = role_headers(role, make_user)
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, headers=headers)
    failures = []
    classes: Counter = Counter()
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                classes += fuzz_operation(operation, mode, headers)
            except Unsatisfiable:  # nothing to make invalid: an operation without parameters or body
                continue
            except (Exception, BaseExceptionGroup) as exc:  # every operation's failure, not only the first
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert operations >= 10
    report.inputs_tried(sum(classes.values()), server_errors=classes.get("5xx", 0))
    assert failures == [], "\n\n".join(failures)
    report.record(
        "Hostile input",
        f"schemathesis as {'an API client' if role == 'client' else 'an admin'}: every operation of /api/schema/ "
        f"({operations}), valid and invalid requests, up to {MAX_EXAMPLES} each, derandomized",
        times=sum(classes.values()),
        outcome=f"responses {dict(sorted(classes.items()))}; no 5xx, every documented response matched the schema",
    )


@pytest.mark.parametrize("role", ["client", "admin"])
def test_generated_sequences_along_the_schemas_links_never_get_a_5xx(
    role, make_user, tiny_task, wsgi_keeps_test_connection, report
):
    headers = role_headers(role, make_user)
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, headers=headers)
    links = sum(
        len(response.get("links", {}))
        for item in schema.raw_schema["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
        for response in operation.get("responses", {}).values()
    )
    assert links >= 5, "the schema's OpenAPI links (scoring.apis.SCHEMA_LINKS) are missing"
    classes: Counter = Counter()
    steps: Counter = Counter()

    class Machine(schema.as_state_machine()):  # type: ignore[misc]  # schemathesis builds the base class at run time
        def before_call(self, case) -> None:
            steer(case)

        def get_call_kwargs(self, case) -> dict:
            return {"headers": headers}

        def validate_response(self, response, case, **kwargs) -> None:
            classes[f"{response.status_code // 100}xx"] += 1
            steps[f"{case.method} {case.path}"] += 1
            case.validate_response(response, checks=CHECKS, headers=headers)

    Machine.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=STEPS,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    report.inputs_tried(sum(classes.values()), server_errors=classes.get("5xx", 0))
    followed = sorted(name for name in steps if "{" in name)
    assert followed, f"no linked call was made: {dict(steps)}"
    report.record(
        "Hostile input",
        f"schemathesis stateful as {'an API client' if role == 'client' else 'an admin'}: {STATEFUL_EXAMPLES} "
        f"sequences of up to {STEPS} calls along the schema's {links} OpenAPI links, derandomized",
        times=sum(classes.values()),
        outcome=f"responses {dict(sorted(classes.items()))}; linked operations reached: {', '.join(followed)}; no 5xx",
    )
