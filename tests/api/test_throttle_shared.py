"""The per-client rate limit holds across web processes: a client cannot multiply it by spreading its calls."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from itertools import cycle

import httpx
import pytest

from scoring.health import redis_client
from scoring.throttling import KEY_PREFIX

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LIMIT = 10


@pytest.fixture
def two_servers(web_server, redis_server):
    client = redis_client()
    for key in client.scan_iter(f"{KEY_PREFIX}*"):
        client.delete(key)
    return [web_server(name, REVIEWAPP_THROTTLE_RATE=f"{LIMIT}/minute") for name in ("a", "b")]


def get_tasks(url: str, token: str) -> int:
    return httpx.get(f"{url}/api/v1/tasks/", headers={"Authorization": f"Token {token}"}, timeout=60).status_code


def test_calls_alternating_between_two_processes_share_one_limit(two_servers, client_token) -> None:
    urls = cycle(server.url for server in two_servers)

    codes = [get_tasks(next(urls), client_token) for _ in range(LIMIT + 4)]

    assert codes.count(200) == LIMIT
    assert codes[LIMIT:] == [429] * 4


def test_a_concurrent_burst_on_two_processes_gets_exactly_the_limit_through(two_servers, client_token) -> None:
    # Read-then-write counting lets simultaneous calls all see room; the count in Redis is one atomic step.
    urls = [two_servers[i % 2].url for i in range(3 * LIMIT)]
    with ThreadPoolExecutor(len(urls)) as pool:
        codes = list(pool.map(lambda url: get_tasks(url, client_token), urls))

    assert codes.count(200) == LIMIT
    assert codes.count(429) == 2 * LIMIT


def test_a_refused_call_says_when_to_retry(two_servers, client_token) -> None:
    for _ in range(LIMIT):
        get_tasks(two_servers[0].url, client_token)

    response = httpx.get(
        f"{two_servers[1].url}/api/v1/tasks/", headers={"Authorization": f"Token {client_token}"}, timeout=60
    )

    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 60


@pytest.mark.django_db
def test_api_calls_still_answer_while_redis_is_unreachable(api, monkeypatch, tmp_path) -> None:
    import redis

    from scoring import throttling

    nowhere = redis.Redis(unix_socket_path=str(tmp_path / "no-redis.sock"), socket_connect_timeout=1)
    monkeypatch.setattr(throttling, "_script", nowhere.register_script(throttling.SLIDING_WINDOW))

    response = api.get("/api/v1/tasks/")

    assert response.status_code == 200
