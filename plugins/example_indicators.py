"""Example local plugin: the Arnaud Legoux moving average (ALMA) with its Pine twin.

Drop a file like this into ``plugins/`` (or the folder named by ``AIO_PLUGINS_DIR`` or
``plugins_dir=``) and aio picks it up: ``register(registry)`` is called at discovery
and the indicator becomes usable by name in strategies and indicator sets::

    indicators:
      trend: {fn: ALMA, inputs: {close: close}, params: {length: alma_len}}

TA-Lib has no ALMA, so this one is computed with numpy. It follows TradingView's
``ta.alma(series, length, offset, sigma, floor)``: Gaussian weights
``exp(-(i - m)^2 / (2 s^2))`` for i = 0 (oldest bar of the window) .. length - 1, with
``m = offset * (length - 1)`` (floored when ``floor``) and ``s = length / sigma``,
normalised to sum 1. A window holding a NaN gives NaN, as Pine's does with ``na``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from aio.indicators import IndicatorDef, PineCall

DEFAULTS = {"length": 9, "offset": 0.85, "sigma": 6.0, "floor": False}


def alma_weights(length: int, offset: float, sigma: float, floor: bool) -> np.ndarray:
    m = offset * (length - 1)
    if floor:
        m = math.floor(m)
    s = length / sigma
    i = np.arange(length, dtype=np.float64)
    w = np.exp(-((i - m) ** 2) / (2.0 * s * s))
    return w / w.sum()


def alma(arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    p = {**DEFAULTS, **dict(params)}
    n = int(p["length"])
    if n < 1:
        raise ValueError(f"ALMA length must be >= 1, got {n}")
    src = arrays["close"]
    out = np.full(len(src), np.nan)
    if len(src) >= n:
        w = alma_weights(n, float(p["offset"]), float(p["sigma"]), bool(p["floor"]))
        # windows are oldest-first, like the weights; one BLAS matrix-vector product
        out[n - 1:] = sliding_window_view(src, n) @ w
    return {"real": out}


def _alma_pine(i: Mapping[str, str], p: Mapping[str, str]) -> PineCall:
    return PineCall(f"ta.alma({i['close']}, {p['length']}, {p['offset']}, {p['sigma']}, {p['floor']})")


ALMA = IndicatorDef(
    name="ALMA",
    inputs=("close",),
    params=dict(DEFAULTS),
    outputs=("real",),
    compute=alma,
    pine=_alma_pine,
    lookback=lambda p: int(p["length"]) - 1,
    description="Arnaud Legoux moving average (ta.alma), example plugin",
    group="plugin example",
)


def register(registry) -> None:
    registry.add("indicator", "ALMA", ALMA, description=ALMA.description)
