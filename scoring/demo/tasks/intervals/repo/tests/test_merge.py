from intervals import merge, total_length


def test_empty_input():
    assert merge([]) == []


def test_disjoint_intervals_stay_apart():
    assert merge([(5, 6), (1, 2)]) == [(1, 2), (5, 6)]


def test_overlapping_intervals_merge():
    assert merge([(1, 3), (2, 5)]) == [(1, 5)]


def test_contained_interval_is_absorbed():
    assert merge([(1, 10), (2, 3)]) == [(1, 10)]


def test_touching_intervals_merge():
    assert merge([(1, 2), (2, 3)]) == [(1, 3)]


def test_total_length_of_overlapping_intervals():
    assert total_length([(0, 2), (1, 3)]) == 3
