"""ITU-R BS.1534-3 (MUSHRA) as Earshot implements it: the limits a stimulus set keeps, the
playback rules, the assessor post-screening thresholds and Tukey's hinges.

The stimulus builder and checker, the web app and the analysis all take these numbers from here,
so a set the builder accepts is one the web app serves and the analysis screens by the same rule.
The web app's player (``webapp/static/mushra.js``) repeats the two playback constants
(:data:`FADE_MS`, :data:`MIN_LOOP_S`) in JavaScript.
"""

from __future__ import annotations

import numpy as np

MAX_SIGNALS_PER_TRIAL = 12
"""§5.3: at most 12 signals on one page, counting the hidden reference and the anchors (the
open reference is not counted)."""

MAX_DURATION_S = 12.0
"""§5.1: an excerpt should not be longer than about 10 s, and at most 12 s."""

RECOMMENDED_DURATION_S = 10.0

MIN_ITEMS = 5
"""§7.1: at least 5 rated items (test excerpts)."""

MIN_LOOP_S = 0.5
"""§5.3: a loop the listener sets spans at least 500 ms."""

FADE_MS = 5.0
"""Raised-cosine fades at every signal start, end, switch and loop boundary, against clicks."""

HIDDEN_REFERENCE_BELOW = 90.0
HIDDEN_REFERENCE_MAX_FRACTION = 0.15
"""§4.1.2 rule 1: an assessor who rates the hidden reference below 90 for more than 15 % of the
test items is excluded (exactly 15 % stays)."""

MID_ANCHOR_ABOVE = 90.0
MID_ANCHOR_MAX_FRACTION = 0.15
MID_ANCHOR_ITEM_GUARD = 0.25
"""§4.1.2 rule 2: an assessor who rates the mid anchor above 90 for more than 15 % of the test
items is excluded, ignoring every item in which more than 25 % of the assessors rated the mid
anchor above 90 (there the anchor did not degrade the item)."""

FRACTION_TOLERANCE = 1e-9
"""Guards the strict "more than" of a fraction against a threshold from float rounding: 3 of 20
must equal 15 %, not exceed it."""


def exceeds(fraction, limit: float):
    """Whether ``fraction`` (a number or an array) is strictly more than ``limit``, with
    :data:`FRACTION_TOLERANCE`: the "more than 15 %" of both screening rules."""
    return fraction > limit + FRACTION_TOLERANCE


def tukey_hinges(values) -> tuple[float, float, float]:
    """``(lower hinge, median, upper hinge)`` of 1-D ``values``: the hinges are the medians of the
    lower and upper halves, the median included in both halves when n is odd (the quartiles the
    Recommendation's boxplots use). NaNs are ignored; all NaN for an empty input."""
    x = np.sort(np.asarray(values, dtype=float).ravel())
    x = x[~np.isnan(x)]
    n = x.size
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    half = (n + 1) // 2
    return float(np.median(x[:half])), float(np.median(x)), float(np.median(x[n - half :]))


def grouped_hinges(values: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower hinge, median and upper hinge of many groups at once.

    ``values``: the groups' values one after another, each group sorted ascending and without
    NaNs; ``counts``: each group's length (every count at least 1). Vectorised, so a million
    values take milliseconds; the same numbers as :func:`tukey_hinges` per group.
    """
    values = np.asarray(values, dtype=float)
    counts = np.asarray(counts, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)

    def median_of(first: np.ndarray, length: np.ndarray) -> np.ndarray:
        return (values[first + (length - 1) // 2] + values[first + length // 2]) / 2

    half = (counts + 1) // 2
    return median_of(starts, half), median_of(starts, counts), median_of(starts + counts - half, half)
