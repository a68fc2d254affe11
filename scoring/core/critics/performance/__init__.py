"""Performance: the benchmark critic and the statistics that compare its timings."""
