"""run_backtest: pack bars and Signals into arrays, run the compiled broker loop, wrap the result."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class OrderLayout:
    """The order slots of a strategy as the broker's static arrays (same for every bar)."""

    ids: list[str]
    action: np.ndarray
    direction: np.ndarray
    otype: np.ndarray
    cancel_false: np.ndarray
    oca: np.ndarray
    exit_id: str = "Exit"

    @classmethod
    def of(cls, signals: Signals) -> "OrderLayout":
        K = len(signals.orders)
        action = np.empty(K, dtype=np.int64)
        direction = np.empty(K, dtype=np.int64)
        otype = np.empty(K, dtype=np.int64)
        cancel_false = np.empty(K, dtype=np.bool_)
        oca = np.full(K, -1, dtype=np.int64)
        groups: dict[str, int] = {}
        for k, slot in enumerate(signals.orders):
            if slot.type not in _OTYPE:
                raise ConfigError(f"order {slot.id!r}: type {slot.type!r} is not one of {list(_OTYPE)}")
            otype[k] = _OTYPE[slot.type]
            if slot.type != "market" and slot.price is None:
                raise ConfigError(f"order {slot.id!r} is a {slot.type} order but has no price")
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
        return cls([s.id for s in signals.orders], action, direction, otype, cancel_false, oca,
                   br.id if br is not None else "Exit")

    @property
    def statics(self) -> tuple:
        return self.action, self.direction, self.otype, self.cancel_false, self.oca


def broker_config(cfg: BacktestConfig, has_brackets: bool) -> tuple[np.ndarray, np.ndarray]:
    """The broker's float and int config arrays from the backtest config and its instrument."""
    if cfg.qty_type not in _QTY:
        raise ConfigError(f"backtest.qty_type={cfg.qty_type!r}; choose one of {list(_QTY)}")
    if cfg.commission_type not in _COMM:
        raise ConfigError(f"backtest.commission_type={cfg.commission_type!r}; choose one of {list(_COMM)}")
    ins = cfg.instrument_spec()
    cf = np.zeros(E.CF_N)
    cf[E.CF_CRATE] = float(cfg.commission)
    cf[E.CF_SLIP] = float(cfg.slippage_ticks) * ins.mintick
    cf[E.CF_INVTICK] = _inv_tick(ins.mintick)
    cf[E.CF_CONTRACT] = ins.contract_size
    cf[E.CF_MLONG] = float(cfg.margin_long) * 0.01
    cf[E.CF_MSHORT] = float(cfg.margin_short) * 0.01
    cf[E.CF_QSTEP] = ins.qty_step
    cf[E.CF_QMIN] = ins.qty_min
    cf[E.CF_QTY] = float(cfg.qty)
    ci = np.zeros(E.CI_N, dtype=np.int64)
    ci[E.CI_CMODE] = _COMM[cfg.commission_type]
    ci[E.CI_MAXLOTS] = max(1, int(cfg.pyramiding))
    ci[E.CI_ONCLOSE] = int(bool(cfg.process_orders_on_close))
    ci[E.CI_QTYMODE] = _QTY[cfg.qty_type]
    ci[E.CI_HASBR] = int(has_brackets)
    return cf, ci


def run_backtest(bars: Bars | pl.DataFrame | dict, signals: Signals, cfg: BacktestConfig | None = None,
                 rates: tuple[np.ndarray, np.ndarray] | None = None) -> BacktestResult:
    """Simulate ``signals`` on ``bars`` with TradingView's strategy-tester fill rules.

    ``bars`` may also be the dict from :func:`bar_arrays`, which an optimiser builds
    once and reuses for every trial. ``rates``: (at each bar's open, at each close),
    account currency per 1 quote currency; None when the quote is the account currency.
    Most callers go through :class:`aio.backtest.evaluator.Evaluator`, which resolves
    the rates and checks the result's invariants.
    """
    cfg = cfg or BacktestConfig()
    arr = bars if isinstance(bars, dict) else bar_arrays(bars)
    o, h, l, c = arr["open"], arr["high"], arr["low"], arr["close"]
    n = o.shape[0]

    half_spread = _EMPTY
    if cfg.use_spread and "spread_mean" in arr:
        half_spread = arr["spread_mean"] * 0.5
    rate_o = rate_c = _EMPTY
    if rates is not None:
        rate_o, rate_c = _opt(rates[0], n, "conversion rate (open)"), _opt(rates[1], n, "conversion rate (close)")

    layout = OrderLayout.of(signals)
    K = len(layout.ids)
    # bars x slots, so the broker reads one contiguous row per bar
    when = np.zeros((n, K), dtype=np.bool_)
    price = np.full((n, K), np.nan)
    for k, slot in enumerate(signals.orders):
        w = np.asarray(slot.when)
        if w.shape != (n,):
            raise ConfigError(f"order {slot.id!r}: 'when' has shape {w.shape} but there are {n} bars")
        when[:, k] = w
        if slot.type != "market":
            price[:, k] = _opt(slot.price, n, f"order {slot.id!r} price")

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
    has_brackets = any(v.shape[0] > 0 for v in bkw.values())
    size = _opt(signals.size, n, "signals.size")
    cf, ci = broker_config(cfg, has_brackets)

    # one trade row per possible entry fill (an entry fills at most once per placement);
    # margin calls split lots into more rows, so an overflow re-runs with the room it lacked
    is_entry = layout.action == E.ENTRY
    cap = int(when[:, is_entry].sum()) if K else 0
    while True:
        buf = np.empty((cap, E.T_NCOL))
        ntr, overflow, ruin_bar, margin_calls, comm_total, equity, position = E.simulate(
            buf, o, h, l, c, half_spread, rate_o, rate_c, when, price, *layout.statics, size, **bkw,
            cf=cf, ci=ci, initial_capital=float(cfg.initial_capital),
        )
        if not overflow:
            break
        cap += int(overflow) + 16
    return BacktestResult(
        raw_trades=buf[:ntr],
        equity_values=equity,
        position_values=position,
        ts_event=arr["ts_event"],
        order_ids=layout.ids,
        exit_id=layout.exit_id,
        config=cfg,
        size_steps=dict(signals.size_steps),
        ruin_bar=int(ruin_bar) if ruin_bar >= 0 else None,
        margin_calls=int(margin_calls),
        commission_total=float(comm_total),
        rates=(rate_o, rate_c) if rates is not None else None,
        close=c,
    )
