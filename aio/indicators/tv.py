"""TradingView-exact indicators built from TA-Lib primitives.

Where TA-Lib seeds a warm-up differently from Pine, these give Pine's values from the
first bar Pine has one (checked against TradingView's exports in
tests/test_indicators_tv_parity.py):

- ``MACD_TV``  = ``ta.macd``: EMA(fast) - EMA(slow) both from bar 0, signal = EMA of that
  difference (TA-Lib's MACD instead starts the fast EMA on the slow one's first bar).
- ``ATR_TV``   = ``ta.atr``: RMA of ``ta.tr(true)`` (first true range is high - low).
- ``DMI_TV``   = ``ta.dmi``: +DI, -DI, ADX with Pine's RMA seeding and ``fixnan``.
- ``MFI_TV``   = ``ta.mfi(series, length)``: a source series (e.g. ``close``) and volume;
  Pine counts the first bar in both money flows, so it has one more value than TA-Lib.
- ``OBV_TV``   = ``ta.obv``: na on bar 0, then the sum of signed volumes from 0.
- ``BBW``      = ``ta.bbw``: (upper - lower) / middle * 100 of Bollinger Bands.
- ``KC_TV``    = ``ta.kc``: EMA middle, band = mult * EMA(true range) (TA-Lib's KC uses
  an ATR of its own length).
- ``HIGHEST``/``LOWEST`` = TA-Lib MAX/MIN under Pine's names.

Comparisons that pick a direction (DMI's movements, MFI's flows) use Pine's 1e-10
comparison tolerance, so equal moves that differ only by float dust count as equal,
as on TradingView.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import talib

from aio.indicators.base import IndicatorDef, PineCall, require_chart
from aio.indicators.primitives import first_valid, fixnan, rma, rolling_sum, true_range

# Pine compares floats with this absolute tolerance (a == b when |a - b| < 1e-10).
PINE_EPS = 1e-10

P = Mapping[str, Any]
A = Mapping[str, np.ndarray]


def _p(defaults: dict[str, Any], params: P) -> dict[str, Any]:
    return {**defaults, **dict(params)} if params else defaults


# -- MACD_TV ---------------------------------------------------------------------------
_MACD_P = {"fastperiod": 12, "slowperiod": 26, "signalperiod": 9}


def macd_tv(a: A, params: P) -> dict[str, np.ndarray]:
    p = _p(_MACD_P, params)
    src = a["close"]
    macd = talib.EMA(src, p["fastperiod"]) - talib.EMA(src, p["slowperiod"])
    # TA-Lib skips the leading NaNs of the difference: the signal is seeded with the SMA
    # of its first `signalperiod` defined values, exactly Pine's ta.ema on that series.
    signal = talib.EMA(macd, p["signalperiod"])
    return {"macd": macd, "macdsignal": signal, "macdhist": macd - signal}


def _macd_pine(i: Mapping[str, str], p: Mapping[str, str]) -> PineCall:
    return PineCall(
        f"ta.macd({i['close']}, {p['fastperiod']}, {p['slowperiod']}, {p['signalperiod']})",
        tuple_outputs=("macd", "macdsignal", "macdhist"),
    )


# -- ATR_TV ----------------------------------------------------------------------------
def atr_tv(a: A, params: P) -> dict[str, np.ndarray]:
    n = _p({"timeperiod": 14}, params)["timeperiod"]
    return {"real": rma(true_range(a["high"], a["low"], a["close"], handle_na=True), n)}


def _atr_pine(i: Mapping[str, str], p: Mapping[str, str]) -> PineCall:
    require_chart("ATR_TV", "ta.atr", i, "high", "low", "close")
    return PineCall(f"ta.atr({p['timeperiod']})")


# -- DMI_TV ----------------------------------------------------------------------------
_DMI_P = {"timeperiod": 14, "adxperiod": 14}


def dmi_tv(a: A, params: P) -> dict[str, np.ndarray]:
    p = _p(_DMI_P, params)
    n, adx_n = p["timeperiod"], p["adxperiod"]
    high, low = a["high"], a["low"]
    up = np.empty_like(high)
    down = np.empty_like(low)
    up[0] = down[0] = np.nan
    np.subtract(high[1:], high[:-1], out=up[1:])
    np.subtract(low[:-1], low[1:], out=down[1:])
    undefined = np.isnan(up) | np.isnan(down)
    plus_dm = np.where((up - down > PINE_EPS) & (up > PINE_EPS), up, 0.0)
    minus_dm = np.where((down - up > PINE_EPS) & (down > PINE_EPS), down, 0.0)
    plus_dm[undefined] = np.nan
    minus_dm[undefined] = np.nan
    trur = rma(true_range(high, low, a["close"], handle_na=False), n)
    with np.errstate(divide="ignore", invalid="ignore"):
        zero = trur == 0.0
        plus = 100.0 * rma(plus_dm, n) / trur
        minus = 100.0 * rma(minus_dm, n) / trur
        plus[zero] = np.nan
        minus[zero] = np.nan
        plus, minus = fixnan(plus), fixnan(minus)
        total = plus + minus
        dx = np.abs(plus - minus) / np.where(total == 0.0, 1.0, total)
    return {"plus_di": plus, "minus_di": minus, "adx": 100.0 * rma(dx, adx_n)}


def _dmi_pine(i: Mapping[str, str], p: Mapping[str, str]) -> PineCall:
    require_chart("DMI_TV", "ta.dmi", i, "high", "low", "close")
    return PineCall(f"ta.dmi({p['timeperiod']}, {p['adxperiod']})", tuple_outputs=("plus_di", "minus_di", "adx"))


# -- MFI_TV ----------------------------------------------------------------------------
def mfi_tv(a: A, params: P) -> dict[str, np.ndarray]:
    n = _p({"timeperiod": 14}, params)["timeperiod"]
    src, vol = a["close"], a["volume"]
    flow = vol * src
    chg = np.empty_like(src)
    chg[0] = np.nan
    np.subtract(src[1:], src[:-1], out=chg[1:])
    first = np.isnan(chg)  # Pine: `na <= 0` is false, so the first bar's flow lands in both sums
    upper = rolling_sum(np.where(first | (chg > PINE_EPS), flow, 0.0), n)
    lower = rolling_sum(np.where(first | (chg < -PINE_EPS), flow, 0.0), n)
    upper[np.abs(upper) <= PINE_EPS] = 0.0
    lower[np.abs(lower) <= PINE_EPS] = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 100.0 - 100.0 / (1.0 + upper / lower)
    out[lower == 0.0] = 100.0
    out[np.isnan(upper) | np.isnan(lower)] = np.nan
    return {"real": out}


def _mfi_pine(i: Mapping[str, str], p: Mapping[str, str]) -> PineCall:
    require_chart("MFI_TV", "ta.mfi", i, "volume")
    return PineCall(f"ta.mfi({i['close']}, {p['timeperiod']})")


# -- OBV_TV ----------------------------------------------------------------------------
def obv_tv(a: A, params: P) -> dict[str, np.ndarray]:
    close, vol = a["close"], a["volume"]
    out = talib.OBV(close, vol)
    s = first_valid(close, vol)
    if s < len(out):
        out -= vol[s]
        out[s] = np.nan
    return {"real": out}


def _obv_pine(i: Mapping[str, str], p: Mapping[str, str]) -> PineCall:
    if i["close"].strip() == "close" and i["volume"].strip() == "volume":
        return PineCall("ta.obv")
    return PineCall(f"ta.cum(math.sign(ta.change({i['close']})) * ({i['volume']}))")


# -- BBW -------------------------------------------------------------------------------
def bbw(a: A, params: P) -> dict[str, np.ndarray]:
    p = _p({"timeperiod": 20, "nbdev": 2.0}, params)
    upper, middle, lower = talib.BBANDS(a["close"], p["timeperiod"], p["nbdev"], p["nbdev"], 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (upper - lower) / middle * 100.0
    out[middle == 0.0] = np.nan
    return {"real": out}


def _bbw_pine(i: Mapping[str, str], p: Mapping[str, str]) -> PineCall:
    return PineCall(f"ta.bbw({i['close']}, {p['timeperiod']}, {p['nbdev']})")


# -- KC_TV -----------------------------------------------------------------------------
_KC_P = {"timeperiod": 20, "nbdev": 2.0, "use_true_range": True}


def kc_tv(a: A, params: P) -> dict[str, np.ndarray]:
    p = _p(_KC_P, params)
    n = p["timeperiod"]
    high, low, close = a["high"], a["low"], a["close"]
    middle = talib.EMA(close, n)
    # ta.tr (no handle_na) is na on the first bar; TA-Lib's EMA skips that leading NaN
    # exactly as Pine's ta.ema skips a leading na, seeding on bars 1..n.
    span = true_range(high, low, close, handle_na=False) if p["use_true_range"] else high - low
    band = talib.EMA(span, n) * p["nbdev"]
    return {"upperband": middle + band, "middleband": middle, "lowerband": middle - band}


def _kc_pine(i: Mapping[str, str], p: Mapping[str, str]) -> PineCall:
    require_chart("KC_TV", "ta.kc", i, "high", "low", "close")
    return PineCall(
        f"ta.kc(close, {p['timeperiod']}, {p['nbdev']}, {p['use_true_range']})",
        tuple_outputs=("middleband", "upperband", "lowerband"),
    )


def _simple(fn: str, inp: str = "close"):
    def call(i: Mapping[str, str], p: Mapping[str, str]) -> PineCall:
        return PineCall(f"{fn}({i[inp]}, {p['timeperiod']})")

    return call


def _n1(key: str = "timeperiod"):
    return lambda p: int(p[key]) - 1


def tv_defs(talib_defs: Mapping[str, IndicatorDef]) -> dict[str, IndicatorDef]:
    d = [
        IndicatorDef("MACD_TV", ("close",), dict(_MACD_P), ("macd", "macdsignal", "macdhist"), macd_tv, _macd_pine,
                     lambda p: max(p["fastperiod"], p["slowperiod"]) - 1 + p["signalperiod"] - 1,
                     "MACD seeded like TradingView's ta.macd", "TradingView"),
        IndicatorDef("ATR_TV", ("high", "low", "close"), {"timeperiod": 14}, ("real",), atr_tv, _atr_pine, _n1(),
                     "Average True Range seeded like TradingView's ta.atr", "TradingView"),
        IndicatorDef("DMI_TV", ("high", "low", "close"), dict(_DMI_P), ("plus_di", "minus_di", "adx"), dmi_tv,
                     _dmi_pine, lambda p: p["timeperiod"] + p["adxperiod"] - 1,
                     "+DI, -DI and ADX seeded like TradingView's ta.dmi", "TradingView"),
        IndicatorDef("MFI_TV", ("close", "volume"), {"timeperiod": 14}, ("real",), mfi_tv, _mfi_pine, _n1(),
                     "Money Flow Index of one source series, as TradingView's ta.mfi(series, length)", "TradingView"),
        IndicatorDef("OBV_TV", ("close", "volume"), {}, ("real",), obv_tv, _obv_pine, lambda p: 1,
                     "On Balance Volume as TradingView's ta.obv (na on the first bar, sums from 0)", "TradingView"),
        IndicatorDef("BBW", ("close",), {"timeperiod": 20, "nbdev": 2.0}, ("real",), bbw, _bbw_pine, _n1(),
                     "Bollinger Bands Width in percent of the middle band, as ta.bbw", "TradingView"),
        IndicatorDef("KC_TV", ("high", "low", "close"), dict(_KC_P), ("upperband", "middleband", "lowerband"), kc_tv,
                     _kc_pine, lambda p: p["timeperiod"] if p["use_true_range"] else p["timeperiod"] - 1,
                     "Keltner channels as TradingView's ta.kc (EMA of the true range; TA-Lib's KC uses an ATR)",
                     "TradingView"),
    ]
    out = {x.name: x for x in d}
    for alias, base, pine_fn in (("HIGHEST", "MAX", "ta.highest"), ("LOWEST", "MIN", "ta.lowest")):
        out[alias] = dataclasses.replace(
            talib_defs[base], name=alias, pine=_simple(pine_fn),
            description=f"{talib_defs[base].description}; Pine's {pine_fn}",
        )
    return out

