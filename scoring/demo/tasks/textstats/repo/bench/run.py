"""Benchmark: de-duplicate a long word list. Prints {"seconds": ...} on its last line."""

import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textstats import unique_words  # noqa: E402

rng = random.Random(7)
words = [f"w{rng.randrange(2500)}" for _ in range(5000)]


def once() -> float:
    start = time.perf_counter()
    unique_words(words)
    return time.perf_counter() - start


# Best of 7: the minimum is the run least disturbed by whatever else the machine was doing.
print(json.dumps({"seconds": min(once() for _ in range(7))}))
