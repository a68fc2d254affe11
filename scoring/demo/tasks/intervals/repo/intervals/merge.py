"""Merge overlapping closed intervals [start, end]."""


def merge(intervals):
    """Merge overlapping or touching intervals; return (start, end) tuples sorted by start.

    Raises ValueError for an interval that ends before it starts. The input is not modified.
    """
    if not intervals:
        return []
    ordered = sorted(intervals)
    merged = [list(ordered[0])]
    for start, end in ordered[1:]:
        last = merged[-1]
        if start < last[1]:
            last[1] = end
        else:
            merged.append([start, end])
    return [tuple(pair) for pair in merged]


def total_length(intervals):
    """Return the length of the union of the intervals."""
    return sum(end - start for start, end in merge(intervals))
