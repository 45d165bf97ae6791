"""Pine's building blocks (``ta.rma``, ``ta.tr``, ``fixnan``, ``math.sum``) on TA-Lib primitives.

Pure functions on float64 arrays; leading NaNs (an indicator of an indicator) stay NaN
and the computation starts at the first bar where every input is defined, which is
how Pine treats a series that starts ``na``.
"""

from __future__ import annotations

import numpy as np
import talib


def first_valid(*arrays: np.ndarray) -> int:
    """First bar from which every array has started (len if one never does).

    Like TA-Lib, only leading NaNs count; a NaN later in a series propagates.
    """
    n = len(arrays[0])
    start = 0
    for a in arrays:
        if n == 0 or not np.isnan(a[0]):
            continue
        defined = ~np.isnan(a)
        if not defined.any():
            return n
        start = max(start, int(np.argmax(defined)))
    return start


def rma(x: np.ndarray, length: int) -> np.ndarray:
    """Pine's ``ta.rma``: Wilder's average ``(prev * (n - 1) + x) / n`` seeded with the SMA.

    TA-Lib's RMA is that recursion with that seed (tests check it against a plain loop of
    Pine's definition); its wrapper skips leading NaNs as Pine skips a leading ``na``.
    """
    return talib.RMA(x, timeperiod=length)


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray, handle_na: bool) -> np.ndarray:
    """Pine's ``ta.tr(handle_na)``: NaN on the first bar, or high - low there when ``handle_na``."""
    tr = talib.TRANGE(high, low, close)
    if handle_na:
        s = first_valid(high, low, close)
        if s < len(tr):
            tr[s] = high[s] - low[s]
    return tr


def fixnan(x: np.ndarray) -> np.ndarray:
    """Pine's ``fixnan``: a NaN after the first value repeats the last defined value."""
    nan = np.isnan(x)
    if not nan.any():
        return x
    idx = np.where(nan, 0, np.arange(len(x)))
    np.maximum.accumulate(idx, out=idx)
    # leading NaNs map to index 0, itself NaN: nothing to repeat yet
    return x[idx]


def rolling_sum(x: np.ndarray, length: int) -> np.ndarray:
    """Pine's ``math.sum``: NaN until ``length`` values are in the window."""
    if length == 1:
        return x.copy()
    return talib.SUM(x, timeperiod=length)
