"""BS.1534-3 limits, screening thresholds and Tukey's hinges as common.bs1534 states them."""

import math

import numpy as np
import pytest

from common import bs1534


def test_limits_are_the_recommendations():
    assert bs1534.MAX_SIGNALS_PER_TRIAL == 12
    assert (bs1534.RECOMMENDED_DURATION_S, bs1534.MAX_DURATION_S) == (10.0, 12.0)
    assert bs1534.MIN_LOOP_S == 0.5
    assert bs1534.FADE_MS == 5.0
    assert bs1534.MIN_ITEMS == 5
    assert (bs1534.HIDDEN_REFERENCE_BELOW, bs1534.HIDDEN_REFERENCE_MAX_FRACTION) == (90.0, 0.15)
    assert (bs1534.MID_ANCHOR_ABOVE, bs1534.MID_ANCHOR_MAX_FRACTION) == (90.0, 0.15)
    assert bs1534.MID_ANCHOR_ITEM_GUARD == 0.25


@pytest.mark.parametrize(
    "failures, items, excluded",
    [
        (3, 20, False),  # exactly 15 % stays
        (4, 20, True),  # 20 %
        (15, 100, False),
        (16, 100, True),
        (1, 7, False),  # 14.3 %
        (2, 13, True),  # 15.4 %
        (0, 1, False),
        (1, 1, True),
    ],
)
def test_more_than_15_percent_is_strict(failures, items, excluded):
    assert bool(bs1534.exceeds(failures / items, bs1534.HIDDEN_REFERENCE_MAX_FRACTION)) is excluded


def test_item_guard_at_its_boundary():
    # 1 of 4 assessors above 90: exactly 25 %, the item still counts; 2 of 7 (28.6 %) is ignored.
    assert not bs1534.exceeds(1 / 4, bs1534.MID_ANCHOR_ITEM_GUARD)
    assert bs1534.exceeds(2 / 7, bs1534.MID_ANCHOR_ITEM_GUARD)
    assert bs1534.exceeds(np.array([0.25, 0.26]), 0.25).tolist() == [False, True]


@pytest.mark.parametrize(
    "values, expected",
    [
        ([1, 2, 3, 4, 5], (2.0, 3.0, 4.0)),  # odd: the median 3 joins both halves
        ([1, 2, 3, 4], (1.5, 2.5, 3.5)),
        ([5, 1, 4, 2, 3], (2.0, 3.0, 4.0)),  # order does not matter
        ([1, 2, 3, 4, 5, 6], (2.0, 3.5, 5.0)),  # numpy's default quantiles: 2.25, 4.75
        ([20, 40, 50, 60, 70, 90], (40.0, 55.0, 70.0)),
        ([7], (7.0, 7.0, 7.0)),
        ([3, 1], (1.0, 2.0, 3.0)),
        ([1, float("nan"), 3], (1.0, 2.0, 3.0)),  # NaN ignored
    ],
)
def test_tukey_hinges_by_hand(values, expected):
    assert bs1534.tukey_hinges(values) == expected


def test_tukey_hinges_of_nothing_is_nan():
    assert all(math.isnan(v) for v in bs1534.tukey_hinges([]))


def test_grouped_hinges_by_hand():
    # groups [1 2 3 4 5], [1 2 3 4], [7]: one after another, each sorted
    q1, median, q3 = bs1534.grouped_hinges(np.array([1, 2, 3, 4, 5, 1, 2, 3, 4, 7.0]), np.array([5, 4, 1]))
    assert q1.tolist() == [2.0, 1.5, 7.0]
    assert median.tolist() == [3.0, 2.5, 7.0]
    assert q3.tolist() == [4.0, 3.5, 7.0]
