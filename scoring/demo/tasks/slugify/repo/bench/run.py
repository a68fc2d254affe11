"""Benchmark: slugify a few thousand titles. Prints {"seconds": ...} on its last line."""

import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slugify import slugify  # noqa: E402

rng = random.Random(3)
words = ["Crème", "brûlée", "Hello", "World", "naïve", "café", "Top", "10", "tips", "for", "Python"]
titles = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(4000)]


def once() -> float:
    start = time.perf_counter()
    for title in titles:
        slugify(title, max_length=40)
    return time.perf_counter() - start


# Best of 7: the minimum is the run least disturbed by whatever else the machine was doing.
print(json.dumps({"seconds": min(once() for _ in range(7))}))
