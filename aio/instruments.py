"""Instrument specs and the quote -> account currency conversion.

One record per instrument, derived from the instrument table the Dukascopy source
ships (every symbol it knows): base and quote currency, tick size, point, pip,
contract size and quantity step/minimum. The backtest's tick and slippage, quantity
rounding, the sizers and the Pine export all read it, so nothing assumes EURUSD.

Conversion follows TradingView's rule as PyneCore reproduces it against TradingView:
every cash flow is converted at the rate of the bar it is booked on and never
re-marked (a closed trade's profit is its gross at the exit fill's rate minus the
entry fee at the entry fill's rate minus the exit fee at the exit fill's rate);
open profit follows the current bar. Rates used (see docs/backtest.md):

* quote == account: 1;
* the pair is account/quote (USDJPY on a USD account): 1 / the pair's own price;
* a cross (GBPJPY on a USD account): a conversion pair (USDJPY -> 1/price, or
  JPYUSD-like quote/account pairs -> price) loaded from the same data source and range.

A fill during bar t converts at that bar's open (the last price known when the first
fill of the bar happens, so no amount uses a later price); marks and fills at the
close convert at the bar's close.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from aio.errors import ConfigError

OVERRIDE_KEYS = ("base", "quote", "mintick", "point", "pip", "contract_size", "qty_step", "qty_min")


@dataclass(frozen=True)
class InstrumentSpec:
    symbol: str
    base: str
    quote: str
    mintick: float  # smallest price increment (TradingView's syminfo.mintick)
    point: float  # the datafeed's price unit (Dukascopy's 1/decimal factor)
    pip: float  # the conventional pip (10 points on 5/3-digit FX quotes)
    contract_size: float = 1.0  # quote currency per 1.0 of price per unit (TradingView's pointvalue)
    qty_step: float = 1.0  # order quantities are rounded down to this step
    qty_min: float = 1.0  # smaller orders are not placed

    def round_qty(self, qty: float) -> float:
        return float(np.floor(qty / self.qty_step + 1e-9) * self.qty_step)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _split(name: str) -> tuple[str, str] | None:
    base, sep, quote = name.partition("/")
    if not sep:
        return None
    return base.split(".")[0], quote


def instrument_spec(symbol: str, overrides: Mapping[str, Any] | None = None) -> InstrumentSpec:
    """The spec of ``symbol`` from the shipped instrument table, with config overrides.

    An unknown symbol is a ConfigError that names the keys to set.
    """
    from aio.data.dukascopy.instruments import normalize, table

    ov = {k: v for k, v in dict(overrides or {}).items() if v is not None}
    bad = sorted(set(ov) - set(OVERRIDE_KEYS))
    if bad:
        raise ConfigError(f"config key backtest.instrument has unknown fields {bad}; allowed: {', '.join(OVERRIDE_KEYS)}")
    key = normalize(symbol)
    row = table().get(key)
    if row is not None:
        parts = _split(row.name)
        base, quote = parts if parts else (key, "")
        fields: dict[str, Any] = dict(symbol=key, base=base, quote=quote, mintick=row.point, point=row.point,
                                      pip=row.pip)
    else:
        need = ("base", "quote", "mintick")
        missing = [k for k in need if k not in ov]
        if missing:
            raise ConfigError(
                f"symbol {symbol!r} is not in the instrument table, so its tick and currencies are unknown. "
                f"Set {', '.join(f'backtest.instrument.{k}' for k in missing)} (e.g. +backtest.instrument.base=EUR "
                f"+backtest.instrument.quote=USD +backtest.instrument.mintick=0.00001), or use a known symbol such as "
                f"EURUSD, USDJPY, GBPJPY"
            )
        fields = dict(symbol=key, base=ov["base"], quote=ov["quote"], mintick=float(ov["mintick"]),
                      point=float(ov.get("point", ov["mintick"])), pip=float(ov.get("pip", ov["mintick"])))
    fields.update({k: (str(v).upper() if k in ("base", "quote") else float(v)) for k, v in ov.items()})
    spec = InstrumentSpec(**fields)
    for k in ("mintick", "point", "pip", "contract_size", "qty_step"):
        if not getattr(spec, k) > 0:
            raise ConfigError(f"config key backtest.instrument.{k}={getattr(spec, k)} must be > 0")
    if spec.qty_min < 0:
        raise ConfigError(f"config key backtest.instrument.qty_min={spec.qty_min} must be >= 0")
    return spec


@dataclass(frozen=True)
class ConversionPlan:
    """How quote-currency amounts become account currency.

    ``kind``: ``none`` (quote is the account currency), ``fixed`` (a configured rate),
    ``self_inverse`` (the traded pair is account/quote: 1/its price), ``pair`` (another
    pair's price, ``invert`` when it is account/quote).
    """

    kind: str
    account: str
    quote: str
    pair: str | None = None
    invert: bool = False
    rate: float | None = None

    def bar_rates(self, open_: float, close: float) -> tuple[float, float]:
        """One bar's (open, close) rates from that bar alone, as :func:`conversion_rates` gives them
        (a stream has no conversion pair's bars: ``pair`` is not defined here)."""
        if self.kind == "none":
            return 1.0, 1.0
        if self.kind == "fixed":
            return float(self.rate), float(self.rate)
        if self.kind == "self_inverse":
            return 1.0 / open_, 1.0 / close
        raise ConfigError(f"conversion through {self.pair} needs that pair's bars, not one traded bar")

    def describe(self) -> str:
        if self.kind == "none":
            return f"P&L is in {self.quote}, the account currency: no conversion"
        if self.kind == "fixed":
            return f"{self.quote} -> {self.account} at the fixed rate {self.rate} (backtest.conversion_rate)"
        if self.kind == "self_inverse":
            return f"{self.quote} -> {self.account} at 1 / the traded pair's own price"
        how = "1 / price" if self.invert else "price"
        return f"{self.quote} -> {self.account} at {how} of {self.pair} (same source and range)"


def conversion_plan(spec: InstrumentSpec, account: str, fixed_rate: float | None = None) -> ConversionPlan:
    from aio.data.dukascopy.instruments import table

    account = account.upper()
    if spec.quote == account:
        return ConversionPlan("none", account, spec.quote)
    if fixed_rate is not None:
        if not fixed_rate > 0:
            raise ConfigError(f"config key backtest.conversion_rate={fixed_rate} must be > 0")
        return ConversionPlan("fixed", account, spec.quote, rate=float(fixed_rate))
    if spec.base == account:
        return ConversionPlan("self_inverse", account, spec.quote, pair=spec.symbol, invert=True)
    tab = table()
    if account + spec.quote in tab:
        return ConversionPlan("pair", account, spec.quote, pair=account + spec.quote, invert=True)
    if spec.quote + account in tab:
        return ConversionPlan("pair", account, spec.quote, pair=spec.quote + account, invert=False)
    raise conversion_error(spec, account, None, "no pair of the two currencies is in the instrument table")


def conversion_error(spec: InstrumentSpec, account: str, pair: str | None, why: str) -> ConfigError:
    what = f"the conversion series {pair}" if pair else f"a {spec.quote}/{account} conversion series"
    return ConfigError(
        f"{spec.symbol} P&L is in {spec.quote} but the account currency is {account}, and {what} cannot be had: "
        f"{why}. Either set backtest.account_currency={spec.quote} (P&L in {spec.quote}), or give a fixed rate "
        f"with backtest.conversion_rate=<{account} per 1 {spec.quote}>"
    )


def conversion_rates(plan: ConversionPlan, bars: Any, pair_bars: Any = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(rate at each bar's open, rate at each bar's close), account per 1 quote; None for 1.

    ``bars``: the traded bars frame; ``pair_bars``: the conversion pair's bars (for
    ``kind == "pair"``), aligned causally: each traded bar takes the conversion bar with
    the same open time, else the last conversion close known before it.
    """
    n = bars.height
    if plan.kind == "none":
        return None
    if plan.kind == "fixed":
        r = np.full(n, float(plan.rate))
        return r, r
    if plan.kind == "self_inverse":
        o = bars.get_column("open").to_numpy().astype(np.float64)
        c = bars.get_column("close").to_numpy().astype(np.float64)
        return 1.0 / o, 1.0 / c
    if pair_bars is None or pair_bars.height == 0:
        raise ConfigError(f"conversion pair {plan.pair} has no bars in the range")
    ts = bars.get_column("ts_event").to_numpy().astype(np.int64)
    pts = pair_bars.get_column("ts_event").to_numpy().astype(np.int64)
    po = pair_bars.get_column("open").to_numpy().astype(np.float64)
    pc = pair_bars.get_column("close").to_numpy().astype(np.float64)
    idx = np.searchsorted(pts, ts, side="right") - 1  # last conversion bar opening at or before
    same = (idx >= 0) & (pts[np.clip(idx, 0, None)] == ts)
    prev = np.searchsorted(pts, ts, side="left") - 1  # last conversion bar opening strictly before
    if np.any(prev[~same] < 0):
        first = int(np.argmax(~same & (prev < 0)))
        raise ConfigError(f"conversion pair {plan.pair} has no price at or before the traded bar {first}")
    # same open time: that bar's open and close; otherwise the last close known before
    o = np.where(same, po[np.clip(idx, 0, None)], pc[np.clip(prev, 0, None)])
    c = np.where(same, pc[np.clip(idx, 0, None)], pc[np.clip(prev, 0, None)])
    if plan.invert:
        return 1.0 / o, 1.0 / c
    return o, c
