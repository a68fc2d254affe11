"""API rate limits counted in Redis, so every web process on every host shares one count per client.

DRF's own throttles keep their history in Django's cache with a read and a later write: per process with the
local-memory cache, and racy across processes even with a shared one (two requests read the same history and
both pass). Here one Lua script prunes, counts and records a request atomically in a sorted set, on the Redis
server's clock (so hosts with skewed clocks agree).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import redis
from rest_framework.throttling import UserRateThrottle

from scoring import notify

log = logging.getLogger(__name__)

KEY_PREFIX = "reviewapp:throttle:"

# KEYS[1] the client's key; ARGV: window seconds, allowed requests, a unique member. Returns {allowed, wait_ms}.
SLIDING_WINDOW = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window_ms = tonumber(ARGV[1]) * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window_ms)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now_ms, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window_ms)
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window_ms - now_ms}
"""

_client: redis.Redis | None = None
_script: Any = None


def _sliding_window() -> Any:
    global _client, _script
    if _script is None:
        _client = redis.Redis.from_url(notify.redis_url(), socket_timeout=2, socket_connect_timeout=2)
        _script = _client.register_script(SLIDING_WINDOW)
    return _script


class SharedUserRateThrottle(UserRateThrottle):
    """UserRateThrottle (REVIEWAPP_THROTTLE_RATE per user, or per address when anonymous) counted in Redis.

    When Redis cannot be reached the request is let through and a warning logged: a broker outage must not refuse
    every call, and the per-client queue limit (in the database) still bounds what one client can submit.
    """

    def allow_request(self, request: Any, view: Any) -> bool:
        if self.rate is None:
            return True
        num_requests, duration = self.parse_rate(self.rate)  # what DRF's __init__ stored on self, typed
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        try:
            allowed, wait_ms = _sliding_window()(
                keys=[KEY_PREFIX + key], args=[duration, num_requests, uuid.uuid4().hex]
            )
        except (redis.RedisError, OSError) as exc:
            log.warning("rate limit not checked: Redis is unreachable (%s)", exc)
            return True
        self._wait_s = int(wait_ms) / 1000
        return bool(allowed)

    def wait(self) -> float | None:
        return getattr(self, "_wait_s", None)
