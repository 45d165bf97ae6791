"""Pine v6 counterparts of TA-Lib functions.

Each entry turns Pine source expressions (per input) and Pine parameter expressions
(identifiers of strategy inputs or number literals) into a :class:`PineCall`. Signatures
follow the Pine v6 reference: ``ta.rsi(source, length)``, ``ta.bb(series, length, mult)``
-> [middle, upper, lower], ``ta.macd(source, fastlen, slowlen, siglen)`` -> [macd,
signal, hist], ``ta.stoch(source, high, low, length)``, ``ta.dmi(diLength, adxSmoothing)``
-> [+DI, -DI, ADX], ``ta.atr(length)``, ``ta.wpr(length)``, ``ta.mfi(series, length)``,
``ta.stdev(source, length, biased=true)``, ``ta.obv``/``ta.tr`` (variables) ...

``exact`` is False where TA-Lib seeds its warm-up differently from Pine: the values then
converge (Wilder/EMA memory decays geometrically) and ``tv_variant`` names our indicator
that matches TradingView from its first value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from aio.errors import ExportError
from aio.indicators.base import PineCall, PineFn, literal, on_chart, pine_ma, require_chart

In = Mapping[str, str]


@dataclass(frozen=True)
class PineSpec:
    fn: PineFn
    exact: bool = True
    tv_variant: str | None = None
    note: str = ""


def _src(fn_name: str, inp: str = "close") -> PineFn:
    def call(i: In, p: In) -> PineCall:
        return PineCall(f"{fn_name}({i[inp]}, {p['timeperiod']})")

    return call


def _bbands(i: In, p: In) -> PineCall:
    if literal("BBANDS", "matype", p["matype"]) != 0:
        raise ExportError("BBANDS exports to ta.bb only with matype=0 (SMA middle band)")
    if p["nbdevup"].strip() != p["nbdevdn"].strip():
        raise ExportError(
            f"BBANDS exports to ta.bb only with nbdevup == nbdevdn (got {p['nbdevup']} and {p['nbdevdn']}); "
            f"ta.bb has one multiplier"
        )
    return PineCall(
        f"ta.bb({i['close']}, {p['timeperiod']}, {p['nbdevup']})",
        tuple_outputs=("middleband", "upperband", "lowerband"),
    )


def _macd(i: In, p: In) -> PineCall:
    return PineCall(
        f"ta.macd({i['close']}, {p['fastperiod']}, {p['slowperiod']}, {p['signalperiod']})",
        tuple_outputs=("macd", "macdsignal", "macdhist"),
    )


def _stoch_k(i: In, length: str) -> str:
    return f"ta.stoch({i['close']}, {i['high']}, {i['low']}, {length})"


def _stochf(i: In, p: In) -> PineCall:
    k = _stoch_k(i, p["fastk_period"])
    d = f"{pine_ma('STOCHF', 'fastd_matype', p['fastd_matype'])}({k}, {p['fastd_period']})"
    return PineCall(k, output_exprs={"fastk": k, "fastd": d})


def _stoch(i: In, p: In) -> PineCall:
    raw = _stoch_k(i, p["fastk_period"])
    k = f"{pine_ma('STOCH', 'slowk_matype', p['slowk_matype'])}({raw}, {p['slowk_period']})"
    d = f"{pine_ma('STOCH', 'slowd_matype', p['slowd_matype'])}({k}, {p['slowd_period']})"
    return PineCall(k, output_exprs={"slowk": k, "slowd": d})


def _dmi(fn: str, slots: tuple[str, str, str]) -> PineFn:
    def call(i: In, p: In) -> PineCall:
        require_chart(fn, "ta.dmi", i, "high", "low", "close")
        return PineCall(f"ta.dmi({p['timeperiod']}, {p['timeperiod']})", tuple_outputs=slots)

    return call


def _atr(i: In, p: In) -> PineCall:
    require_chart("ATR", "ta.atr", i, "high", "low", "close")
    return PineCall(f"ta.atr({p['timeperiod']})")


def _trange(i: In, p: In) -> PineCall:
    require_chart("TRANGE", "ta.tr", i, "high", "low", "close")
    return PineCall("ta.tr")


def _willr(i: In, p: In) -> PineCall:
    if on_chart(i, "high", "low", "close"):
        return PineCall(f"ta.wpr({p['timeperiod']})")
    hh = f"ta.highest({i['high']}, {p['timeperiod']})"
    ll = f"ta.lowest({i['low']}, {p['timeperiod']})"
    return PineCall(f"100 * (({i['close']}) - {hh}) / ({hh} - {ll})")


def _hlc3(i: In) -> str:
    if on_chart(i, "high", "low", "close"):
        return "hlc3"
    if i["high"].strip() == i["low"].strip() == i["close"].strip():
        return i["close"]  # one series fed to all three: its own typical price
    return f"(({i['high']}) + ({i['low']}) + ({i['close']})) / 3"


def _mfi(i: In, p: In) -> PineCall:
    require_chart("MFI", "ta.mfi", i, "volume")
    return PineCall(f"ta.mfi({_hlc3(i)}, {p['timeperiod']})")


def _cci(i: In, p: In) -> PineCall:
    return PineCall(f"ta.cci({_hlc3(i)}, {p['timeperiod']})")


def _obv(i: In, p: In) -> PineCall:
    if on_chart(i, "close", "volume"):
        return PineCall("ta.obv")
    return PineCall(f"ta.cum(math.sign(ta.change({i['close']})) * ({i['volume']}))")


def _stddev(i: In, p: In) -> PineCall:
    base = f"ta.stdev({i['close']}, {p['timeperiod']})"
    try:
        unit = float(p["nbdev"]) == 1.0
    except ValueError:
        unit = False
    return PineCall(base if unit else f"{base} * {p['nbdev']}")


def _vwma(i: In, p: In) -> PineCall:
    require_chart("VWMA", "ta.vwma", i, "volume")
    return PineCall(f"ta.vwma({i['close']}, {p['timeperiod']})")


def _tsi(i: In, p: In) -> PineCall:
    # TA-Lib: 100 * EMA(EMA(mom, first), second) / EMA(EMA(|mom|, first), second);
    # Pine's ta.tsi(source, short, long) smooths by `long` first and returns [-1, 1].
    return PineCall(f"100 * ta.tsi({i['close']}, {p['secondperiod']}, {p['firstperiod']})")


def _cumsum(i: In, p: In) -> PineCall:
    return PineCall(f"ta.cum({i['close']})")


def _rocp(i: In, p: In) -> PineCall:
    return PineCall(f"ta.roc({i['close']}, {p['timeperiod']}) / 100")


def _linreg(i: In, p: In) -> PineCall:
    return PineCall(f"ta.linreg({i['close']}, {p['timeperiod']}, 0)")


def _correl(i: In, p: In) -> PineCall:
    return PineCall(f"ta.correlation({i['high']}, {i['low']}, {p['timeperiod']})")


def _sum(i: In, p: In) -> PineCall:
    return PineCall(f"math.sum({i['close']}, {p['timeperiod']})")


def _price(chart: str, formula: str, names: tuple[str, ...]) -> PineFn:
    def call(i: In, p: In) -> PineCall:
        if on_chart(i, *names):
            return PineCall(chart)
        return PineCall(formula.format(**{k: f"({i[k]})" for k in names}))

    return call


_SEED = "TA-Lib seeds its Wilder average differently from Pine; values converge after a few hundred bars"
_DMI = (
    _SEED + "; also, when the up and down moves are equal but for float dust (1e-16), TA-Lib counts a "
    "directional move where Pine's tolerant comparison (1e-10) counts none, so they part again for a while"
)

PINE: dict[str, PineSpec] = {
    "RSI": PineSpec(_src("ta.rsi")),
    "EMA": PineSpec(_src("ta.ema")),
    "SMA": PineSpec(_src("ta.sma")),
    "WMA": PineSpec(_src("ta.wma")),
    "HMA": PineSpec(_src("ta.hma")),
    "RMA": PineSpec(_src("ta.rma")),
    "VWMA": PineSpec(_vwma),
    "CMOU": PineSpec(_src("ta.cmo")),
    "TSI": PineSpec(_tsi),
    "CUMSUM": PineSpec(_cumsum),
    "MOM": PineSpec(_src("ta.mom")),
    "ROC": PineSpec(_src("ta.roc")),
    "ROCP": PineSpec(_rocp),
    "MAX": PineSpec(_src("ta.highest")),
    "MIN": PineSpec(_src("ta.lowest")),
    "SUM": PineSpec(_sum),
    "LINEARREG": PineSpec(_linreg),
    "CORREL": PineSpec(_correl),
    "STDDEV": PineSpec(_stddev),
    "BBANDS": PineSpec(_bbands),
    "CCI": PineSpec(_cci),
    "WILLR": PineSpec(_willr),
    "STOCHF": PineSpec(_stochf),
    "STOCH": PineSpec(_stoch),
    "TRANGE": PineSpec(_trange),
    "MEDPRICE": PineSpec(_price("hl2", "({high} + {low}) / 2", ("high", "low"))),
    "TYPPRICE": PineSpec(_price("hlc3", "({high} + {low} + {close}) / 3", ("high", "low", "close"))),
    "AVGPRICE": PineSpec(_price("ohlc4", "({open} + {high} + {low} + {close}) / 4", ("open", "high", "low", "close"))),
    "WCLPRICE": PineSpec(_price("hlcc4", "({high} + {low} + 2 * {close}) / 4", ("high", "low", "close"))),
    "MACD": PineSpec(
        _macd, exact=False, tv_variant="MACD_TV",
        note="TA-Lib starts the fast EMA on the slow EMA's first bar (seed over a later window) where Pine "
             "starts both on bar 0; MACD_TV is Pine's. The difference decays like (1 - 2/(fast+1))^bars",
    ),
    "ATR": PineSpec(
        _atr, exact=False, tv_variant="ATR_TV",
        note="Pine's first true range is high - low and its RMA starts one bar earlier; " + _SEED,
    ),
    "ADX": PineSpec(_dmi("ADX", ("plus_di", "minus_di", "real")), exact=False, tv_variant="DMI_TV", note=_DMI),
    "PLUS_DI": PineSpec(_dmi("PLUS_DI", ("real", "minus_di", "adx")), exact=False, tv_variant="DMI_TV", note=_DMI),
    "MINUS_DI": PineSpec(_dmi("MINUS_DI", ("plus_di", "real", "adx")), exact=False, tv_variant="DMI_TV", note=_DMI),
    "MFI": PineSpec(
        _mfi, exact=False, tv_variant="MFI_TV",
        note="Pine counts bar 0 in both money flows and so has a value one bar earlier (bar length-1); "
             "identical from bar `length` on",
    ),
    "OBV": PineSpec(
        _obv, exact=False, tv_variant="OBV_TV",
        note="TA-Lib's OBV starts at volume[0], Pine's ta.obv is na on bar 0 and sums from 0: a constant offset",
    ),
}
