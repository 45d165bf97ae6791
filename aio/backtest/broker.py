"""The stepped broker for callers that see one bar at a time (the live engine).

It owns the broker's explicit state and calls the same compiled
:func:`aio.backtest.engine.step` that the batch backtest loops over, so a stream of
bars fed here gives the batch backtest's trades, trade for trade. The state is a few
numpy arrays: :meth:`Broker.snapshot` / :meth:`Broker.restore` serialise it (a journal
can checkpoint it), and :meth:`Broker.result` builds the same BacktestResult the batch
pass returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aio.backtest import engine as E
from aio.backtest.config import BacktestConfig
from aio.backtest.result import BacktestResult
from aio.backtest.signals import Signals
from aio.backtest.simulator import OrderLayout, broker_config


@dataclass
class Decisions:
    """What the rules decided at one bar's close, per order slot (acted on from the next bar)."""

    when: np.ndarray  # bool per slot
    price: np.ndarray  # trigger price per slot (nan for market orders)
    size: float = float("nan")  # the sizer's units (nan: the configured quantity)
    stop_dist: float = float("nan")
    take_dist: float = float("nan")
    # bracket levels decided at this close; they apply from the next bar
    stop_long: float = float("nan")
    limit_long: float = float("nan")
    stop_short: float = float("nan")
    limit_short: float = float("nan")
    size_steps: dict[str, float] = field(default_factory=dict)  # each sizer step's units (reports)

    @classmethod
    def at(cls, sig: Signals, t: int) -> "Decisions":
        """Bar ``t``'s decisions out of whole-series Signals."""
        K = len(sig.orders)
        when = np.zeros(K, dtype=np.bool_)
        price = np.full(K, np.nan)
        for k, o in enumerate(sig.orders):
            when[k] = bool(o.when[t])
            if o.price is not None:
                price[k] = float(o.price[t])
        d = cls(when, price)
        if sig.size is not None:
            d.size = float(sig.size[t])
        br = sig.brackets
        if br is not None:
            for name in ("stop_dist", "take_dist", "stop_long", "limit_long", "stop_short", "limit_short"):
                arr = getattr(br, name)
                if arr is not None:
                    setattr(d, name, float(arr[t]))
        d.size_steps = {k: float(v[t]) for k, v in (sig.size_steps or {}).items()}
        return d


@dataclass
class Broker:
    """One account trading one strategy's order slots, advanced one closed bar at a time."""

    layout: OrderLayout
    cfg: BacktestConfig
    has_brackets: bool = False
    t: int = 0  # the next bar's index
    ts_event: list[int] = field(default_factory=list)
    closes: list[float] = field(default_factory=list)
    rates_o: list[float] = field(default_factory=list)
    rates_c: list[float] = field(default_factory=list)
    equity: list[float] = field(default_factory=list)
    position: list[float] = field(default_factory=list)
    size_steps: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        K = len(self.layout.ids)
        self.cf, self.ci = broker_config(self.cfg, self.has_brackets)
        self.lots = np.empty((int(self.ci[E.CI_MAXLOTS]), E.L_NCOL))
        self.ist = np.zeros(E.S_N, dtype=np.int64)
        self.ist[E.S_RUIN_BAR] = -1
        self.st = np.zeros(E.ST_N)
        self.st[E.ST_CASH] = float(self.cfg.initial_capital)
        self.pend = np.zeros(K, dtype=np.bool_)
        self.pf = np.full((K, E.P_N), np.nan)
        self.tr = np.empty((64, E.T_NCOL))
        self.bar = np.full(E.B_N, np.nan)
        self._prev = Decisions(np.zeros(K, dtype=np.bool_), np.full(K, np.nan))
        # the compiled loop's quiet-bar shortcut, taken without the whole bar loop (see step)
        self._may_quiet = not (self.cf[E.CF_MLONG] > 0 or self.cf[E.CF_MSHORT] > 0)
        self._has_br = int(self.ci[E.CI_HASBR]) != 0
        self._contract = float(self.cf[E.CF_CONTRACT])
        self.quiet_bars = 0  # bars stepped without the compiled call (the quiet-bar shortcut)

    @classmethod
    def for_signals(cls, sig: Signals, cfg: BacktestConfig) -> "Broker":
        br = sig.brackets
        has = br is not None and any(getattr(br, n) is not None for n in
                                     ("stop_long", "limit_long", "stop_short", "limit_short", "stop_dist", "take_dist"))
        return cls(OrderLayout.of(sig), cfg, has)

    def step(self, ts_event: int, o: float, h: float, l: float, c: float, decisions: Decisions,
             spread_mean: float = float("nan"), rate_open: float = 1.0, rate_close: float = 1.0) -> tuple[float, float]:
        """Apply one closed bar and the decisions made at its close; (equity, position) at the close."""
        ist = self.ist
        if (self._may_quiet and not ist[E.S_RUINED] and not np.count_nonzero(decisions.when)
                and not np.count_nonzero(self.pend)):  # count_nonzero: a C call, ndarray.any() is not
            nlots = int(ist[E.S_NLOTS])
            if nlots == 0 or not self._has_br:
                # A quiet bar: nothing pending, nothing decided, no bracket or margin to watch.
                # The compiled _run only marks the position then (engine.mark) and changes no
                # state: call that alone instead of the whole bar loop.
                eq, pos = E.mark(c, rate_close, self.lots, ist, self.st, self._contract)
                if eq > 0.0:  # otherwise the compiled loop books the ruin
                    self.quiet_bars += 1
                    return self._book(ts_event, c, rate_open, rate_close, decisions, float(eq), float(pos))
        if self.tr.shape[0] - int(self.ist[E.S_NTR]) < 4 * (len(self.layout.ids) + self.lots.shape[0]) + 8:
            self.tr = np.concatenate([self.tr, np.empty_like(self.tr)])  # room for any one bar's fills
        b = self.bar
        b[E.B_O], b[E.B_H], b[E.B_L], b[E.B_C] = o, h, l, c
        b[E.B_HS] = spread_mean * 0.5 if (self.cfg.use_spread and spread_mean == spread_mean) else 0.0
        b[E.B_RO], b[E.B_RC] = rate_open, rate_close
        prev = self._prev
        b[E.B_SLL], b[E.B_TPL] = prev.stop_long, prev.limit_long
        b[E.B_SLS], b[E.B_TPS] = prev.stop_short, prev.limit_short
        b[E.B_SD], b[E.B_TD] = decisions.stop_dist, decisions.take_dist
        b[E.B_SIZE] = decisions.size
        eq, pos = E.step(self.t, b, decisions.when, decisions.price, self.cf, self.ci, *self.layout.statics,
                         self.lots, self.ist, self.st, self.pend, self.pf, self.tr)
        return self._book(ts_event, c, rate_open, rate_close, decisions, float(eq), float(pos))

    def _book(self, ts_event: int, c: float, rate_open: float, rate_close: float, decisions: Decisions,
              eq: float, pos: float) -> tuple[float, float]:
        self._prev = decisions
        self.t += 1
        self.ts_event.append(int(ts_event))
        self.closes.append(float(c))
        self.rates_o.append(float(rate_open))
        self.rates_c.append(float(rate_close))
        self.equity.append(eq)
        self.position.append(pos)
        for k, v in decisions.size_steps.items():
            self.size_steps.setdefault(k, []).append(float(v))
        return eq, pos

    @property
    def n_trades(self) -> int:
        return int(self.ist[E.S_NTR])

    @property
    def ruined(self) -> bool:
        return bool(self.ist[E.S_RUINED])

    @property
    def pos(self) -> float:
        """Signed units held at the last close."""
        return self.position[-1] if self.position else 0.0

    def trade(self, i: int) -> dict[str, Any]:
        """Closed trade ``i`` as a record (a journal's trade log; the columns of ``result().trades``)."""
        from aio.backtest.result import signal_name

        row = self.tr[i]
        ids, exit_id = self.layout.ids, self.layout.exit_id
        return {"side": "long" if row[E.T_SIDE] > 0 else "short", "entry_bar": int(row[E.T_EBAR]),
                "exit_bar": int(row[E.T_XBAR]), "entry_time": self.ts_event[int(row[E.T_EBAR])],
                "exit_time": self.ts_event[int(row[E.T_XBAR])], "entry_price": float(row[E.T_EPX]),
                "exit_price": float(row[E.T_XPX]), "qty": float(row[E.T_QTY]), "pnl": float(row[E.T_PNL]),
                "commission": float(row[E.T_COMM]), "entry_signal": signal_name(ids, exit_id, row[E.T_ESIG]),
                "exit_signal": signal_name(ids, exit_id, row[E.T_XSIG])}

    def result(self, close_open: bool = True) -> BacktestResult:
        """The trades and equity so far, as the batch pass reports them (an open position
        closed at the last close as "Open" when ``close_open``)."""
        lots, ist, st, tr = self.lots.copy(), self.ist.copy(), self.st.copy(), self.tr.copy()
        eq = np.asarray(self.equity, dtype=np.float64)
        if close_open and self.t > 0 and not ist[E.S_RUINED] and ist[E.S_NLOTS] > 0:
            eq[-1] = E.finish(self.t - 1, self.closes[-1], self.rates_c[-1], self.cf, self.ci, lots, ist, st, tr)
        has_rates = any(r != 1.0 for r in self.rates_o) or any(r != 1.0 for r in self.rates_c)
        rates = (np.asarray(self.rates_o), np.asarray(self.rates_c)) if has_rates else None
        return BacktestResult(
            raw_trades=tr[: int(ist[E.S_NTR])], equity_values=eq,
            position_values=np.asarray(self.position, dtype=np.float64),
            ts_event=np.asarray(self.ts_event, dtype=np.int64), order_ids=list(self.layout.ids),
            exit_id=self.layout.exit_id, config=self.cfg,
            size_steps={k: np.asarray(v, dtype=np.float64) for k, v in self.size_steps.items()},
            ruin_bar=int(ist[E.S_RUIN_BAR]) if ist[E.S_RUIN_BAR] >= 0 else None,
            margin_calls=int(ist[E.S_MARGIN_CALLS]), commission_total=float(st[E.ST_COMM]), rates=rates,
            close=np.asarray(self.closes, dtype=np.float64),
        )

    # -- persistence (a journal checkpoints the whole state) ---------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "t": self.t, "lots": self.lots.copy(), "ist": self.ist.copy(), "st": self.st.copy(),
            "pend": self.pend.copy(), "pf": self.pf.copy(), "tr": self.tr[: int(self.ist[E.S_NTR])].copy(),
            "prev": self._prev, "ts_event": list(self.ts_event), "closes": list(self.closes),
            "rates_o": list(self.rates_o), "rates_c": list(self.rates_c), "equity": list(self.equity),
            "position": list(self.position), "size_steps": {k: list(v) for k, v in self.size_steps.items()},
        }

    def restore(self, snap: dict[str, Any]) -> None:
        self.t = int(snap["t"])
        self.lots[:] = snap["lots"]
        self.ist[:] = snap["ist"]
        self.st[:] = snap["st"]
        self.pend[:] = snap["pend"]
        self.pf[:] = snap["pf"]
        n = snap["tr"].shape[0]
        self.tr = np.empty((max(64, 2 * n), E.T_NCOL))
        self.tr[:n] = snap["tr"]
        self._prev = snap["prev"]
        for k in ("ts_event", "closes", "rates_o", "rates_c", "equity", "position"):
            setattr(self, k, list(snap[k]))
        self.size_steps = {k: list(v) for k, v in snap.get("size_steps", {}).items()}
