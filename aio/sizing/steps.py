"""Sizing steps: each maps the size so far (units, per bar) to a new size.

A *base* step sets the size from scratch (fixed units, percent of equity, risk per
ATR, Kelly risk fraction); a *modifier* scales what came before (model confidence,
drawdown guard); ``constraints`` is always last (min/max units, leverage, lot step).

Every step is a pure, vectorised function of per-bar arrays in :class:`SizingInputs`.
Steps that read equity or the trade history (``needs_history``) are evaluated by
the chain in trade order so that a size decided at bar t only sees trades closed at
or before t's close (see :mod:`aio.sizing.chain`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from aio.config import param


@dataclass
class SizingInputs:
    """What a step may read, one value per bar, all known at that bar's close."""

    close: np.ndarray
    high: np.ndarray
    low: np.ndarray
    initial_capital: float
    equity: np.ndarray  # realised equity after trades closed at or before the bar
    peak: np.ndarray  # running maximum of ``equity``
    win_rate: np.ndarray  # over the last `lookback` closed trades (nan: too few)
    avg_win: np.ndarray  # mean P&L per unit of winning trades (> 0)
    avg_loss: np.ndarray  # mean |P&L| per unit of losing trades (> 0)
    n_closed: np.ndarray  # number of trades in the window
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    base_units: np.ndarray | None = None  # the backtest's own quantity as units per bar
    # account currency per 1.0 of price per unit (contract size x quote->account rate):
    # money budgets become units through it, so no sizer assumes a USD-quoted pair
    to_account: np.ndarray | float = 1.0
    # the instrument's quantity step and minimum: the broker places only these sizes, so
    # the chain rounds to them too and its equity path is the broker's
    qty_step: float = 0.0
    qty_min: float = 0.0
    cache: dict[str, Any] = field(default_factory=dict)


# -- configs -----------------------------------------------------------------------------


@dataclass
class LimitsConfig:
    """Final constraints, applied after every other step."""

    min_units: float = param(0.0, ge=0, help="a smaller order is skipped (size 0)")
    max_units: float | None = param(None, gt=0, help="cap on units per order")
    max_leverage: float | None = param(None, gt=0, help="units * close <= max_leverage * equity")
    lot_step: float | None = param(None, gt=0, help="round down to a multiple of this many units")


@dataclass
class SizerBase:
    """Keys every sizer section shares: the chain after the base step, and limits."""

    then: list[dict[str, Any]] = field(default_factory=list)
    limits: LimitsConfig = field(default_factory=LimitsConfig)


@dataclass
class FixedConfig(SizerBase):
    name: str = "fixed"
    units: float | None = param(None, gt=0, help="units per order; null: the backtest's qty")


@dataclass
class PercentConfig(SizerBase):
    name: str = "percent_of_equity"
    percent: float = param(10.0, gt=0, le=10000, help="order value as percent of equity")


def _lot_limits() -> "LimitsConfig":
    """Risk-based sizes in whole micro lots, at most 30x leverage (EU retail on majors)."""
    return LimitsConfig(min_units=1000.0, max_units=None, max_leverage=30.0, lot_step=1000.0)


@dataclass
class VolTargetConfig(SizerBase):
    name: str = "vol_target"
    limits: LimitsConfig = field(default_factory=_lot_limits)
    risk_pct: float = param(0.5, gt=0, le=100, help="equity risked per order, percent")
    atr_length: int = param(14, ge=1)
    atr_mult: float = param(2.0, gt=0, help="risk distance in ATRs (e.g. the stop)")
    compound: bool = param(True, help="risk a percent of current equity (false: of initial capital)")


@dataclass
class KellyConfig(SizerBase):
    name: str = "kelly"
    limits: LimitsConfig = field(default_factory=_lot_limits)
    fraction: float = param(0.5, gt=0, le=1, help="fraction of the full Kelly bet")
    cap: float = param(0.02, gt=0, le=1, help="most equity risked per order")
    lookback: int = param(50, ge=2, help="closed trades the win rate and payoff come from")
    min_trades: int = param(20, ge=1, help="closed trades needed before Kelly applies")
    warmup_risk: float = param(0.005, ge=0, le=1, help="equity risked per order before that")


@dataclass
class ConfidenceConfig(SizerBase):
    name: str = "confidence"
    source: str = param("model.confidence", help="calibrated probability series from the model")
    low: float = param(0.5, ge=0, le=1, help="at or below: min_scale")
    high: float = param(0.8, ge=0, le=1, help="at or above: max_scale")
    min_scale: float = param(0.0, ge=0)
    max_scale: float = param(1.0, ge=0)
    missing: float = param(0.0, ge=0, help="scale where the series is nan")


@dataclass
class DrawdownGuardConfig(SizerBase):
    name: str = "drawdown_guard"
    start_pct: float = param(5.0, ge=0, le=100, help="drawdown where scaling down starts")
    max_pct: float = param(20.0, gt=0, le=100, help="drawdown where the scale reaches floor")
    floor: float = param(0.25, ge=0, le=1, help="scale between max_pct and halt_pct")
    halt_pct: float | None = param(None, gt=0, le=100, help="no new orders past this drawdown")


# -- steps -------------------------------------------------------------------------------


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _acct(x: SizingInputs, idx: np.ndarray) -> np.ndarray | float:
    a = x.to_account
    return a[idx] if isinstance(a, np.ndarray) else a


def fixed(size: np.ndarray, x: SizingInputs, c: FixedConfig, idx: np.ndarray) -> np.ndarray:
    """Fixed units per order (default: the backtest's configured quantity)."""
    if c.units is not None:
        return np.full(len(idx), float(c.units))
    return np.asarray(x.base_units[idx], dtype=np.float64)


def percent_of_equity(size: np.ndarray, x: SizingInputs, c: PercentConfig, idx: np.ndarray) -> np.ndarray:
    """Order value = percent of realised equity at the decision bar."""
    return _safe_div(c.percent / 100.0 * x.equity[idx], x.close[idx] * _acct(x, idx))


def _atr(x: SizingInputs, length: int) -> np.ndarray:
    key = f"atr:{length}"
    if key not in x.cache:
        from aio.indicators import compute_indicator

        x.cache[key] = compute_indicator("ATR", {"high": x.high, "low": x.low, "close": x.close},
                                         {"timeperiod": int(length)})["real"]
    return x.cache[key]


def vol_target(size: np.ndarray, x: SizingInputs, c: VolTargetConfig, idx: np.ndarray) -> np.ndarray:
    """Risk ``risk_pct`` of equity over ``atr_mult`` ATRs: units = risk / (mult * ATR)."""
    atr = _atr(x, c.atr_length)[idx]
    equity = x.equity[idx] if c.compound else np.full(len(idx), x.initial_capital)
    return _safe_div(c.risk_pct / 100.0 * equity, c.atr_mult * np.nan_to_num(atr, nan=0.0) * _acct(x, idx))


def kelly(size: np.ndarray, x: SizingInputs, c: KellyConfig, idx: np.ndarray) -> np.ndarray:
    """Fractional Kelly, capped: risk f = min(fraction * (W - (1-W)/R), cap) of equity,
    where W and R (payoff) come from trades closed before the decision; units = f*E/avg loss."""
    w, aw, al, n = x.win_rate[idx], x.avg_win[idx], x.avg_loss[idx], x.n_closed[idx]
    payoff = _safe_div(aw, al)
    with np.errstate(divide="ignore", invalid="ignore"):
        f_star = np.where(payoff > 0, w - (1.0 - w) / np.where(payoff > 0, payoff, 1.0), 0.0)
    f = np.clip(c.fraction * np.nan_to_num(f_star, nan=0.0), 0.0, c.cap)
    ready = n >= c.min_trades
    f = np.where(ready, f, min(c.warmup_risk, c.cap))
    # Before any losing trade there is no loss per unit to risk against: use the price.
    per_unit_loss = np.where(ready & (al > 0), al, np.nan)
    units = _safe_div(f * x.equity[idx], np.nan_to_num(per_unit_loss, nan=0.0))
    fallback = _safe_div(f * x.equity[idx], x.close[idx] * 0.01 * _acct(x, idx))  # 1% adverse move
    return np.where(np.isfinite(per_unit_loss), units, fallback)


def confidence(size: np.ndarray, x: SizingInputs, c: ConfidenceConfig, idx: np.ndarray) -> np.ndarray:
    """Scale by the model's calibrated probability: linear from min_scale at ``low``
    to max_scale at ``high``."""
    from aio.errors import ConfigError

    series = x.predictions.get(c.source)
    if series is None:
        raise ConfigError(
            f"sizer step confidence reads {c.source!r} but the run has no such prediction "
            f"(have: {', '.join(sorted(x.predictions)) or 'none'}); run a model that outputs it or set "
            f"sizer.source / choose another sizer"
        )
    p = np.asarray(series, dtype=np.float64)[idx]
    if c.high <= c.low:
        raise ConfigError(f"sizer confidence needs low < high, got low={c.low} high={c.high}")
    t = np.clip((p - c.low) / (c.high - c.low), 0.0, 1.0)
    scale = c.min_scale + (c.max_scale - c.min_scale) * t
    return size * np.where(np.isfinite(p), scale, c.missing)


def drawdown_guard(size: np.ndarray, x: SizingInputs, c: DrawdownGuardConfig, idx: np.ndarray) -> np.ndarray:
    """Scale down as realised equity falls below its peak; stop past ``halt_pct``."""
    dd = 100.0 * (1.0 - _safe_div(x.equity[idx], x.peak[idx]))
    dd = np.where(x.peak[idx] > 0, dd, 0.0)
    span = max(c.max_pct - c.start_pct, 1e-12)
    t = np.clip((dd - c.start_pct) / span, 0.0, 1.0)
    scale = 1.0 - (1.0 - c.floor) * t
    if c.halt_pct is not None:
        scale = np.where(dd >= c.halt_pct, 0.0, scale)
    return size * scale


def constraints(size: np.ndarray, x: SizingInputs, c: LimitsConfig, idx: np.ndarray) -> np.ndarray:
    """Final limits: leverage cap, max units, lot step (down), orders under min skipped."""
    s = np.nan_to_num(np.asarray(size, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    s = np.maximum(s, 0.0)
    if c.max_leverage is not None:
        s = np.minimum(s, _safe_div(c.max_leverage * np.maximum(x.equity[idx], 0.0), x.close[idx] * _acct(x, idx)))
    if c.max_units is not None:
        s = np.minimum(s, c.max_units)
    if c.lot_step is not None:
        # a hair of tolerance so 3 * 0.1 lots stays 3 lots and not 2
        s = np.floor(s / c.lot_step + 1e-9) * c.lot_step
    if x.qty_step > 0:
        s = np.floor(s / x.qty_step + 1e-9) * x.qty_step
    if c.min_units > 0:
        s = np.where(s < c.min_units, 0.0, s)
    if x.qty_min > 0:
        s = np.where(s < x.qty_min, 0.0, s)
    return s


@dataclass
class StepDef:
    name: str
    fn: Callable[[np.ndarray, SizingInputs, Any, np.ndarray], np.ndarray]
    config: type
    base: bool  # sets the size from scratch (True) or scales the size so far (False)
    needs_history: Callable[[Any], bool]  # does it read equity or closed trades?
    pine: bool = False  # expressible in a Pine v6 script


def _never(_: Any) -> bool:
    return False


def _always(_: Any) -> bool:
    return True


STEPS: dict[str, StepDef] = {
    "fixed": StepDef("fixed", fixed, FixedConfig, True, _never, pine=True),
    "percent_of_equity": StepDef("percent_of_equity", percent_of_equity, PercentConfig, True, _always, pine=True),
    "vol_target": StepDef("vol_target", vol_target, VolTargetConfig, True, lambda c: bool(c.compound), pine=True),
    "kelly": StepDef("kelly", kelly, KellyConfig, True, _always),
    "confidence": StepDef("confidence", confidence, ConfidenceConfig, False, _never),
    "drawdown_guard": StepDef("drawdown_guard", drawdown_guard, DrawdownGuardConfig, False, _always),
}
