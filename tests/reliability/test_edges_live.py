"""Issue 20's hostile client, replayed against the live service: the real web server (`manage.py runserver`, debug
off as `make run` serves it) on PostgreSQL, every input named. Each answer must be the 4xx that names the limit,
never a 5xx, never a debug page."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.reliability.conftest import tiny_diff

pytestmark = pytest.mark.reliability

PASSWORD = "correct-horse-battery"


def test_every_hostile_input_of_issue_20_gets_a_4xx_naming_its_limit_on_the_live_server(stack, report):
    base, token = stack.web(), stack.token
    auth = {"Authorization": f"Token {token}"}
    diff = tiny_diff(0)
    sent: list[tuple[str, int, bool]] = []  # (case, status, as expected)

    def case(
        name: str,
        method: str,
        path: str,
        expected: set[int],
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
        headers: dict | None = None,
        says: str = "",
    ) -> httpx.Response:
        response = httpx.request(
            method,
            base + path,
            content=body,
            headers={**auth, "Content-Type": content_type, **(headers or {})},
            timeout=120,
            trust_env=False,
        )
        ok = response.status_code in expected and says in response.text
        ok = ok and "Traceback" not in response.text and "urlpatterns" not in response.text.lower()
        sent.append((name, response.status_code, ok))
        return response

    def nested(depth: int) -> bytes:
        return b"[" * depth + b"1" + b"]" * depth

    big_metadata = json.dumps({"task": "tiny", "diff": diff, "metadata": {"blob": "x" * (20 << 20)}}).encode()
    batch_20mb = json.dumps(
        [
            {"task": "tiny", "diff": diff, "external_id": f"m{i}", "metadata": {"blob": "y" * 20_000}}
            for i in range(1000)
        ]
    ).encode()
    batch_bytes = json.dumps([{"task": "tiny", "diff": diff + "#" * 40_000} for _ in range(1000)]).encode()
    case("?limit=10^20", "GET", "/api/v1/patches/?limit=100000000000000000000", {200})
    case("?offset=10^20", "GET", "/api/v1/patches/?offset=100000000000000000000", {400}, says="offset")
    case("a patch id past 64 bits", "GET", "/api/v1/patches/99999999999999999999999/", {400, 404})
    case("?ids= past 64 bits", "GET", "/api/v1/patches/?ids=99999999999999999999999", {400})
    for path in ("/api/v1/patches/", "/api/v1/rewards/"):
        case(f"JSON nested 50,000 deep to {path}", "POST", path, {400}, body=nested(50_000), says="nested deeper")
    case("metadata nested 40 deep", "POST", "/api/v1/patches/", {400}, says="nested deeper",
         body=json.dumps({"task": "tiny", "diff": diff, "metadata": json.loads(nested(40))}).encode())  # fmt: skip
    case("invalid UTF-8", "POST", "/api/v1/patches/", {400}, body=b'{"task": "\xff"}', says="not valid utf-8")
    case("charset=rot13", "POST", "/api/v1/patches/", {400}, body=b"{}", content_type="application/json; charset=rot13")
    case("1e400 in metadata", "POST", "/api/v1/patches/", {400}, says="out of range",
         body=b'{"task": "tiny", "diff": "x", "metadata": {"x": 1e400}}')  # fmt: skip
    case("NaN in metadata", "POST", "/api/v1/patches/", {400}, body=b'{"task": "tiny", "metadata": {"x": NaN}}')
    case("a 5000-digit number", "POST", "/api/v1/patches/", {400}, body=b'{"task": ' + b"7" * 5000 + b"}")
    case("NUL in metadata", "POST", "/api/v1/patches/", {400},
         body=json.dumps({"task": "tiny", "diff": diff, "metadata": {"x": "a\u0000b"}}).encode())  # fmt: skip
    case("20 MB of metadata on one patch", "POST", "/api/v1/patches/", {400}, body=big_metadata,
         says="REVIEWAPP_MAX_METADATA_BYTES")  # fmt: skip
    case("1000 patches with 20 kB of metadata each", "POST", "/api/v1/patches/", {400}, body=batch_20mb,
         says="REVIEWAPP_MAX_METADATA_BYTES")  # fmt: skip
    case("1000 patches of 40 kB (40 MB)", "POST", "/api/v1/patches/", {413}, body=batch_bytes,
         says="REVIEWAPP_MAX_BATCH_BYTES")  # fmt: skip
    case("a 70 MB body", "POST", "/api/v1/patches/", {413}, body=b" " * (70 << 20), says="REVIEWAPP_MAX_REQUEST_BYTES")
    case("an external_id of 201 characters", "POST", "/api/v1/patches/", {400}, says="external_id",
         body=json.dumps({"task": "tiny", "diff": diff, "external_id": "k" * 201}).encode())  # fmt: skip
    not_found = case("an unknown page", "GET", "/no-such-page/", {404})
    case("an unknown API path", "GET", "/api/v1/no-such-thing/", {404}, says='"detail"')
    assert "api/v1" not in not_found.text and "review/" not in not_found.text

    # Anonymous callers of the operations endpoints.
    health = httpx.get(base + "/healthz", timeout=30, trust_env=False)
    assert set(health.json()) == {"status", "queue_depth"}, health.text
    sent.append(("/healthz as anonymous: status and queue_depth only", health.status_code, True))
    metrics = httpx.get(base + "/metrics", timeout=30, trust_env=False)
    sent.append(("/metrics as anonymous", metrics.status_code, metrics.status_code == 403))

    # Another client lists the tasks: the tiny task is the first client's, not shared.
    other = stack.client_token("other-trainer")
    listed = httpx.get(
        base + "/api/v1/tasks/", headers={"Authorization": f"Token {other}"}, timeout=30, trust_env=False
    )
    sent.append(("another client lists the tasks", listed.status_code, listed.json()["results"] == []))

    # 20 wrong passwords in a row, then the right one, from one browser.
    stack.manage("create_user", "ada", "--role", "admin", "--password", PASSWORD)
    with httpx.Client(base_url=base, trust_env=False, timeout=30) as browser:
        answers = []
        for password in ["wrong-guess"] * 20 + [PASSWORD]:
            page = browser.get("/accounts/login/")
            csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            form = {"username": "ada", "password": password, "csrfmiddlewaretoken": csrf}
            answers.append(browser.post("/accounts/login/", data=form).status_code)
        locked = answers[-1] == 429 and 302 not in answers
        sent.append(("20 wrong passwords then the right one", answers[-1], locked))

    wrong = [f"{name}: {status}" for name, status, ok in sent if not ok]
    # /healthz answers 503 by design when no worker beats (none runs here): that is its message, not an error.
    errors = sum(1 for name, status, _ in sent if status >= 500 and not name.startswith("/healthz"))
    report.inputs_tried(len(sent) + len(answers) - 1, server_errors=errors)
    assert wrong == [], "\n".join(wrong)
    assert errors == 0
    report.record(
        "Hostile input",
        "issue 20's inputs, each named, against the live server on PostgreSQL: ?limit= and ?offset= of 10^20, ids "
        "past 64 bits, JSON 50,000 deep, bad UTF-8, charset=rot13, 1e400, NaN, a 5000-digit number, NUL, 20 MB of "
        "metadata, 1000 patches of 20 kB metadata, 40 MB batch, 70 MB body, a 201-character external_id, unknown "
        "URLs, anonymous /healthz and /metrics, another client's task list, 20 wrong passwords then the right one",
        times=len(sent) + len(answers) - 1,
        outcome="each got its 4xx naming the limit (or 200 capped for ?limit=); no 5xx, no debug page; /healthz "
        "said status and queue depth only, /metrics 403, the task list empty, the right password 429 (locked)",
    )
