"""Benchmark: merge a few hundred random intervals. Prints {"seconds": ...} on its last line."""

import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from intervals import merge  # noqa: E402

rng = random.Random(11)
data = []
for _ in range(600):
    start = rng.randrange(100_000)
    data.append((start, start + rng.randrange(1, 60)))


def once() -> float:
    start = time.perf_counter()
    merge(data)
    return time.perf_counter() - start


# Best of 7: the minimum is the run least disturbed by whatever else the machine was doing.
print(json.dumps({"seconds": min(once() for _ in range(7))}))
