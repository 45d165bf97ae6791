"""The paper broker: the backtest's compiled ``step`` applied once per closed bar.

:func:`aio.backtest.engine.step` is the broker of the batch backtest (``simulate`` is
a loop over it). :class:`PaperBroker` holds that function's explicit state (lots,
pending orders, cash, trades) and calls it with each closed bar and the decisions made
at its close, exactly as the batch loop packs them; it reports what changed at that
bar (orders placed, trades closed, the position) as journal events. ``result()`` is the
batch's :class:`aio.backtest.BacktestResult`, so the run writes the same artifacts
through the same writers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aio.backtest import engine as E
from aio.backtest.signals import OrderSlot, Signals
from aio.errors import ConfigError

BRACKET_KEYS = ("stop_long", "limit_long", "stop_short", "limit_short", "stop_dist", "take_dist")
FLATTEN_ID = "Flatten"  # the controller's market close (flatten), an extra order slot after the strategy's


@dataclass
class Decision:
    """What the rules (and the controller) decided at one bar's close."""

    when: list[bool]
    price: list[float]
    brackets: dict[str, float] = field(default_factory=dict)
    size: float = float("nan")
    size_steps: dict[str, float] = field(default_factory=dict)
    flatten: bool = False

    def payload(self) -> dict[str, Any]:
        return {"when": [bool(w) for w in self.when], "price": [float(p) for p in self.price],
                "brackets": {k: float(v) for k, v in self.brackets.items()}, "size": float(self.size),
                "size_steps": {k: float(v) for k, v in self.size_steps.items()}, "flatten": self.flatten}


class _Grow:
    """An array that doubles its capacity (appending bar by bar stays O(1))."""

    def __init__(self, dtype=np.float64) -> None:
        self.a = np.full(64, np.nan) if dtype == np.float64 else np.zeros(64, dtype=dtype)
        self.n = 0

    def append(self, v) -> None:
        if self.n == self.a.shape[0]:
            grown = np.full(2 * self.n, np.nan) if self.a.dtype == np.float64 else np.zeros(2 * self.n, self.a.dtype)
            grown[: self.n] = self.a
            self.a = grown
        self.a[self.n] = v
        self.n += 1

    def view(self) -> np.ndarray:
        return self.a[: self.n]


class PaperBroker:
    def __init__(self, sig: Signals, bt: Any, conversion: str = "none", fixed_rate: float | None = None) -> None:
        from aio.backtest.simulator import OrderLayout, broker_config

        if conversion not in ("none", "fixed", "self_inverse"):
            raise ConfigError(
                f"the paper engine converts P&L to the account currency from the traded bars alone; a conversion "
                f"through another pair ({conversion}) needs that pair's stream: set backtest.account_currency to the "
                "quote currency or backtest.conversion_rate to a fixed rate")
        flat = OrderSlot(FLATTEN_ID, "close", 0, "market", np.zeros(1, dtype=bool))
        self.layout = OrderLayout.of(Signals(orders=list(sig.orders) + [flat], brackets=sig.brackets))
        br = sig.brackets
        self.bracket_keys = tuple(k for k in BRACKET_KEYS if br is not None and getattr(br, k) is not None)
        self.has_size = sig.size is not None
        self.bt = bt
        self.cf, self.ci = broker_config(bt, bool(self.bracket_keys))
        self.conversion, self.fixed_rate = conversion, fixed_rate
        K = len(self.layout.ids)
        self.K = K
        self.lots = np.empty((max(1, int(self.ci[E.CI_MAXLOTS])), E.L_NCOL))
        self.ist = np.zeros(E.S_N, dtype=np.int64)
        self.ist[E.S_RUIN_BAR] = -1
        self.st = np.zeros(E.ST_N)
        self.st[E.ST_CASH] = float(bt.initial_capital)
        self.pend = np.zeros(K, dtype=np.bool_)
        self.pf = np.full((K, E.P_N), np.nan)
        self.bar = np.full(E.B_N, np.nan)
        self.bar[E.B_RO] = 1.0
        self.bar[E.B_RC] = 1.0
        self.bar[E.B_HS] = 0.0
        self.tr = np.empty((64, E.T_NCOL))
        self.prev_br: dict[str, float] = {}
        self.use_spread = bool(bt.use_spread)
        self.equity, self.position, self.ts, self.close = _Grow(), _Grow(), _Grow(np.int64), _Grow()
        self.rate_o, self.rate_c = _Grow(), _Grow()
        self.size_steps: dict[str, _Grow] = {}
        self.n_trades = 0
        self.t = -1

    @property
    def n_closed(self) -> int:
        return int(self.ist[E.S_NTR])

    @property
    def pos(self) -> float:
        return float(self.position.view()[-1]) if self.position.n else 0.0

    def _rates(self, o: float, c: float) -> tuple[float, float]:
        if self.conversion == "fixed":
            return float(self.fixed_rate), float(self.fixed_rate)
        if self.conversion == "self_inverse":
            return 1.0 / o, 1.0 / c
        return 1.0, 1.0

    def step(self, bar: Any, d: Decision) -> list[tuple[str, dict]]:
        """Bar ``t`` closed with decision ``d``: its fills happen, then ``d`` places its orders."""
        self.t += 1
        t = self.t
        b = self.bar
        b[E.B_O], b[E.B_H], b[E.B_L], b[E.B_C] = bar.open, bar.high, bar.low, bar.close
        if self.use_spread:  # the batch packs half of spread_mean (NaN counts as no spread inside step)
            b[E.B_HS] = bar.spread_mean * 0.5
        ro, rc = self._rates(bar.open, bar.close)
        if self.conversion != "none":
            b[E.B_RO], b[E.B_RC] = ro, rc
        if t > 0:  # bracket levels act from the bar after the close that set them
            for key, col in (("stop_long", E.B_SLL), ("limit_long", E.B_TPL), ("stop_short", E.B_SLS),
                             ("limit_short", E.B_TPS)):
                if key in self.bracket_keys:
                    b[col] = self.prev_br.get(key, np.nan)
        if "stop_dist" in self.bracket_keys:
            b[E.B_SD] = d.brackets.get("stop_dist", np.nan)
        if "take_dist" in self.bracket_keys:
            b[E.B_TD] = d.brackets.get("take_dist", np.nan)
        if self.has_size:
            b[E.B_SIZE] = d.size
        self.prev_br = dict(d.brackets)
        when = np.array(list(d.when) + [d.flatten], dtype=np.bool_)
        price = np.array(list(d.price) + [np.nan], dtype=np.float64)
        # room for every trade this bar can close (each lot, margin-call splits, a reversal)
        need = self.n_closed + 4 * (self.lots.shape[0] + self.K) + 8
        if need > self.tr.shape[0]:
            grown = np.empty((max(need, 2 * self.tr.shape[0]), E.T_NCOL))
            grown[: self.n_closed] = self.tr[: self.n_closed]
            self.tr = grown
        n_before = self.n_closed
        pos_before = self.pos
        eq, pos = E.step(t, b, when, price, self.cf, self.ci, *self.layout.statics, self.lots, self.ist, self.st,
                         self.pend, self.pf, self.tr)
        if self.ist[E.S_OVERFLOW]:  # pragma: no cover - the room above is a bound
            raise RuntimeError("paper broker trade buffer overflowed; please report this")
        self.equity.append(eq)
        self.position.append(pos)
        self.ts.append(bar.ts_event)
        self.close.append(bar.close)
        self.rate_o.append(ro)
        self.rate_c.append(rc)
        for k, v in d.size_steps.items():
            self.size_steps.setdefault(k, _Grow()).append(v)
        events: list[tuple[str, dict]] = []
        for row in self.tr[n_before: self.n_closed]:
            events.append(("trade", self._trade(row)))
        if pos != pos_before:
            events.append(("position", {"units": float(pos), "previous": float(pos_before)}))
        for k in range(self.K):
            if when[k]:
                events.append(("order", {"slot": self.layout.ids[k], "price": float(price[k]),
                                         "pending": bool(self.pend[k]), "client_id": f"{t}:{self.layout.ids[k]}"}))
        return events

    def _trade(self, row: np.ndarray) -> dict:
        names = list(self.layout.ids) + [self.layout.exit_id, self.layout.exit_id, "Open", "Margin call", "Ruin"]
        k = self.K

        def name(code: float) -> str:
            c = int(code)
            return names[c] if c >= 0 else names[k - 1 - c]

        ts = self.ts.view()
        return {"side": "long" if row[E.T_SIDE] > 0 else "short", "entry_bar": int(row[E.T_EBAR]),
                "exit_bar": int(row[E.T_XBAR]), "entry_time": int(ts[int(row[E.T_EBAR])]),
                "exit_time": int(ts[int(row[E.T_XBAR])]), "entry_price": float(row[E.T_EPX]),
                "exit_price": float(row[E.T_XPX]), "qty": float(row[E.T_QTY]), "pnl": float(row[E.T_PNL]),
                "commission": float(row[E.T_COMM]), "entry_signal": name(row[E.T_ESIG]),
                "exit_signal": name(row[E.T_XSIG])}

    def result(self):
        """The run so far as the batch reports it: an open position booked at the last close.

        Computed on copies: the broker can go on stepping afterwards.
        """
        from aio.backtest.result import BacktestResult

        lots, ist, st, tr = self.lots.copy(), self.ist.copy(), self.st.copy(), self.tr.copy()
        need = int(ist[E.S_NTR]) + lots.shape[0] + 1
        if need > tr.shape[0]:
            tr = np.concatenate([tr, np.empty((need - tr.shape[0], E.T_NCOL))])
        equity = self.equity.view().copy()
        n = equity.shape[0]
        if n and ist[E.S_RUINED] == 0 and ist[E.S_NLOTS] > 0:
            equity[n - 1] = E.finish(n - 1, self.close.view()[-1], self.rate_c.view()[-1], self.cf, self.ci,
                                     lots, ist, st, tr)
        rates = None if self.conversion == "none" else (self.rate_o.view().copy(), self.rate_c.view().copy())
        return BacktestResult(
            raw_trades=tr[: int(ist[E.S_NTR])].copy(), equity_values=equity,
            position_values=self.position.view().copy(), ts_event=self.ts.view().copy(),
            order_ids=list(self.layout.ids), exit_id=self.layout.exit_id, config=self.bt,
            size_steps={k: g.view().copy() for k, g in self.size_steps.items()},
            ruin_bar=int(ist[E.S_RUIN_BAR]) if ist[E.S_RUIN_BAR] >= 0 else None,
            margin_calls=int(ist[E.S_MARGIN_CALLS]), commission_total=float(st[E.ST_COMM]), rates=rates,
            close=self.close.view().copy())
