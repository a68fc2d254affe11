"""`make bench`: the benchmarks behind docs/benchmarks.md (`python -m benchmarks` runs them all).

pipeline_bench (throughput against a naive pipeline; cost per stage on a PyPI package), intake_bench, pages_bench,
export_bench, analyser_bench and perf_bench each expose `run(...)`, which returns plain numbers; common holds
what they share.
"""
