import time
import pytest
from tests.reliability.conftest import tiny_diff

@pytest.mark.reliability
def test_smoke(stack):
    t=time.monotonic()
    stack.redis.stop()
    for i in range(2):
        t=time.monotonic()
        s,b=stack.submit(stack.token, tiny_diff(i), f"s{i}", timeout_s=120)
        print(s, b, time.monotonic()-t)
    t=time.monotonic()
    print(stack.request("GET", "/healthz"), time.monotonic()-t)
    stack.redis.start()
    w=stack.worker(beat=True)
    print(stack.wait_all_done([1,2], timeout_s=100), time.monotonic()-t)
    print(stack.evaluations_per_patch())
