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

start = time.perf_counter()
for _ in range(3):
    unique_words(words)
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed}))
