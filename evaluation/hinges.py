"""Tukey's hinges (:mod:`common.bs1534`) for every group of a ratings frame at once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from common.bs1534 import grouped_hinges


def grouped_quartiles(
    frame: pd.DataFrame, keys: Sequence[str], value: str = "score"
) -> pd.DataFrame:
    """Median and Tukey hinges (``n, median, q1, q3``) of ``value`` per ``keys`` group.

    One argsort for all groups (no Python loop), so a million ratings take well under a second.
    Missing values are ignored; the result is indexed by the groups, sorted.
    """
    valid = frame[frame[value].notna()]
    grouper = valid.groupby(list(keys), observed=True, sort=True)
    codes = grouper.ngroup().to_numpy()
    values = valid[value].to_numpy(dtype=float)
    index = grouper.size().index
    if codes.size == 0:
        return pd.DataFrame({"n": [], "median": [], "q1": [], "q3": []}, index=index)
    # Sort by value, then stably by group: two argsorts beat np.lexsort severalfold.
    by_value = np.argsort(values, kind="stable")
    order = by_value[np.argsort(codes[by_value], kind="stable")]
    counts = np.bincount(codes[order], minlength=len(index))
    q1, median, q3 = grouped_hinges(values[order], counts)
    return pd.DataFrame({"n": counts, "median": median, "q1": q1, "q3": q3}, index=index)
