import pytest

from intervals import merge, total_length


def test_reversed_interval_is_rejected():
    with pytest.raises(ValueError):
        merge([(3, 1)])


def test_chain_of_contained_and_touching_intervals():
    assert merge([(1, 10), (2, 3), (4, 5), (10, 12)]) == [(1, 12)]


def test_total_length_with_containment():
    assert total_length([(0, 10), (2, 3)]) == 10


def test_input_is_not_modified():
    data = [(3, 4), (1, 2)]
    merge(data)
    assert data == [(3, 4), (1, 2)]


def test_single_point_intervals():
    assert merge([(2, 2), (5, 5)]) == [(2, 2), (5, 5)]
