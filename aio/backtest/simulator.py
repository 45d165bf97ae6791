"""run_backtest: pack bars and Signals into arrays, run the compiled loop, wrap the result."""

from __future__ import annotations

import numpy as np
import polars as pl

from aio.backtest import engine as E
from aio.backtest.config import BacktestConfig
from aio.backtest.result import BacktestResult
from aio.backtest.signals import Signals
from aio.errors import ConfigError, DataError
from aio.records import Bars

_QTY = {"fixed": 0, "percent_of_equity": 1, "cash": 2}
_COMM = {"percent": E.COMM_PERCENT, "cash_per_order": E.COMM_PER_ORDER, "cash_per_contract": E.COMM_PER_CONTRACT}
_OTYPE = {"market": E.MARKET, "stop": E.STOP, "limit": E.LIMIT}
_EMPTY = np.empty(0)


def _f64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


def _opt(a, n: int, what: str) -> np.ndarray:
    if a is None:
        return _EMPTY
    a = _f64(a)
    if a.shape != (n,):
        raise ConfigError(f"{what} has {a.shape[0] if a.ndim else 0} values but there are {n} bars")
    return a


def _inv_tick(mintick: float) -> float:
    # dividing by round(1/mintick) lands exactly on decimal ticks (113394 / 1e5 == 1.13394)
    inv = 1.0 / mintick
    return float(round(inv)) if abs(inv - round(inv)) < 1e-6 * inv else inv


def bar_arrays(bars: Bars | pl.DataFrame) -> dict[str, np.ndarray]:
    frame = bars.frame if isinstance(bars, Bars) else bars
    missing = [k for k in ("ts_event", "open", "high", "low", "close") if k not in frame.columns]
    if missing:
        raise DataError(f"bars frame lacks columns {missing}; build it with aio.records.BAR_SCHEMA")
    out = {k: _f64(frame.get_column(k).to_numpy()) for k in ("open", "high", "low", "close")}
    out["ts_event"] = np.ascontiguousarray(frame.get_column("ts_event").to_numpy(), dtype=np.int64)
    if "spread_mean" in frame.columns:
        sp = frame.get_column("spread_mean")
        out["spread_mean"] = _f64(sp.fill_null(np.nan).to_numpy())
    return out


def run_backtest(bars: Bars | pl.DataFrame | dict, signals: Signals, cfg: BacktestConfig | None = None) -> BacktestResult:
    """Simulate ``signals`` on ``bars`` with TradingView's strategy-tester fill rules.

    ``bars`` may also be the dict from :func:`bar_arrays`, which an optimiser builds
    once and reuses for every trial.
    """
    cfg = cfg or BacktestConfig()
    arr = bars if isinstance(bars, dict) else bar_arrays(bars)
    o, h, l, c = arr["open"], arr["high"], arr["low"], arr["close"]
    n = o.shape[0]

    half_spread = _EMPTY
    if cfg.use_spread and "spread_mean" in arr:
        half_spread = arr["spread_mean"] * 0.5

    K = len(signals.orders)
    when = np.zeros((K, n), dtype=np.bool_)
    price = np.full((K, n), np.nan)
    action = np.empty(K, dtype=np.int64)
    direction = np.empty(K, dtype=np.int64)
    otype = np.empty(K, dtype=np.int64)
    cancel_false = np.empty(K, dtype=np.bool_)
    oca = np.full(K, -1, dtype=np.int64)
    groups: dict[str, int] = {}
    for k, slot in enumerate(signals.orders):
        w = np.asarray(slot.when)
        if w.shape != (n,):
            raise ConfigError(f"order {slot.id!r}: 'when' has shape {w.shape} but there are {n} bars")
        when[k] = w
        if slot.type not in _OTYPE:
            raise ConfigError(f"order {slot.id!r}: type {slot.type!r} is not one of {list(_OTYPE)}")
        otype[k] = _OTYPE[slot.type]
        if slot.type != "market":
            if slot.price is None:
                raise ConfigError(f"order {slot.id!r} is a {slot.type} order but has no price")
            price[k] = _opt(slot.price, n, f"order {slot.id!r} price")
        if slot.action not in ("entry", "close"):
            raise ConfigError(f"order {slot.id!r}: action {slot.action!r} must be entry or close")
        action[k] = E.ENTRY if slot.action == "entry" else E.CLOSE
        if slot.direction not in (-1, 0, 1) or (slot.action == "entry" and slot.direction == 0):
            raise ConfigError(f"order {slot.id!r}: direction {slot.direction!r} must be +1 or -1 (0 only for close)")
        direction[k] = slot.direction
        cancel_false[k] = bool(slot.cancel_when_false)
        if slot.oca:
            oca[k] = groups.setdefault(slot.oca, len(groups))

    br = signals.brackets
    bkw = dict(sl_long=_EMPTY, tp_long=_EMPTY, sl_short=_EMPTY, tp_short=_EMPTY, stop_dist=_EMPTY, take_dist=_EMPTY)
    if br is not None:
        bkw = dict(
            sl_long=_opt(br.stop_long, n, "brackets.stop_long"),
            tp_long=_opt(br.limit_long, n, "brackets.limit_long"),
            sl_short=_opt(br.stop_short, n, "brackets.stop_short"),
            tp_short=_opt(br.limit_short, n, "brackets.limit_short"),
            stop_dist=_opt(br.stop_dist, n, "brackets.stop_dist"),
            take_dist=_opt(br.take_dist, n, "brackets.take_dist"),
        )
    size = _opt(signals.size, n, "signals.size")

    if cfg.qty_type not in _QTY:
        raise ConfigError(f"backtest.qty_type={cfg.qty_type!r}; choose one of {list(_QTY)}")
    if cfg.commission_type not in _COMM:
        raise ConfigError(f"backtest.commission_type={cfg.commission_type!r}; choose one of {list(_COMM)}")

    # one trade row per possible entry fill: an entry fills at most once per placement
    max_trades = int(when[action == E.ENTRY].sum()) if K else 0
    buf = np.empty((max_trades, E.T_NCOL))
    ntr, overflow, equity, position = E.simulate(
        buf, o, h, l, c, half_spread,
        when, price, action, direction, otype, cancel_false, oca,
        size, _QTY[cfg.qty_type], float(cfg.qty),
        _COMM[cfg.commission_type], float(cfg.commission), float(cfg.slippage_ticks) * float(cfg.mintick),
        _inv_tick(cfg.mintick),
        max(1, int(cfg.pyramiding)), bool(cfg.process_orders_on_close), float(cfg.initial_capital),
        **bkw,
    )
    if overflow:  # pragma: no cover - the bound above is exact
        raise RuntimeError(f"backtest trade buffer too small by {overflow} rows; please report this")
    return BacktestResult(
        raw_trades=buf[:ntr],
        equity_values=equity,
        position_values=position,
        ts_event=arr["ts_event"],
        order_ids=[s.id for s in signals.orders],
        exit_id=br.id if br is not None else "Exit",
        config=cfg,
        size_steps=dict(signals.size_steps),
    )
