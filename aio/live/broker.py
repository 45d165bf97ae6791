"""The paper broker: one closed bar at a time, the backtest's own order semantics.

:class:`PaperBroker` keeps the decisions of every bar so far and asks the backtest's
compiled broker for the state after bar ``t``; it reports what changed at that bar
(trades closed, the position) as journal events. ``result()`` is the same
:class:`aio.backtest.BacktestResult` the batch backtest returns, so the run writes
the same artifacts through the same writers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aio.backtest import engine as E
from aio.backtest.signals import Brackets, OrderSlot, Signals

BRACKET_KEYS = ("stop_long", "limit_long", "stop_short", "limit_short", "stop_dist", "take_dist")
FLATTEN_ID = "Flatten"


@dataclass
class SlotMeta:
    id: str
    action: str
    direction: int
    type: str
    cancel_when_false: bool
    oca: str | None

    @classmethod
    def of(cls, s: OrderSlot) -> "SlotMeta":
        return cls(s.id, s.action, s.direction, s.type, bool(s.cancel_when_false), s.oca)


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
    """A float array that doubles its capacity (appending bar by bar stays O(1))."""

    def __init__(self, dtype=np.float64, width: int | None = None) -> None:
        shape = (64,) if width is None else (width, 64)
        self.a = np.full(shape, np.nan) if dtype == np.float64 else np.zeros(shape, dtype=dtype)
        self.n = 0

    def append(self, v) -> None:
        cap = self.a.shape[-1]
        if self.n == cap:
            fill = np.nan if self.a.dtype == np.float64 else 0
            grown = np.full(self.a.shape[:-1] + (2 * cap,), fill, dtype=self.a.dtype)
            grown[..., :cap] = self.a
            self.a = grown
        self.a[..., self.n] = v
        self.n += 1

    def view(self) -> np.ndarray:
        return self.a[..., : self.n]


class PaperBroker:
    def __init__(self, slots: list[SlotMeta], bt_cfg: Any, exit_id: str = "Exit", bracket_keys: tuple = ()) -> None:
        self.slots = list(slots) + [SlotMeta(FLATTEN_ID, "close", 0, "market", False, None)]
        self.bt = bt_cfg
        self.exit_id = exit_id
        self.bracket_keys = tuple(bracket_keys)
        k = len(self.slots)
        self.when = _Grow(np.bool_, k)
        self.price = _Grow(np.float64, k)
        self.br = {key: _Grow() for key in self.bracket_keys}
        self.size = _Grow()
        self.size_steps: dict[str, _Grow] = {}
        self.bars = {c: _Grow() for c in ("open", "high", "low", "close", "spread_mean")}
        self.ts = _Grow(np.int64)
        self.n_closed = 0
        self.position = 0.0
        self.last = None

    def signals(self) -> Signals:
        orders = [OrderSlot(s.id, s.action, s.direction, s.type, self.when.view()[k],
                            self.price.view()[k] if s.type != "market" else None, s.cancel_when_false, s.oca)
                  for k, s in enumerate(self.slots)]
        br = None
        if self.bracket_keys:
            br = Brackets(**{key: self.br[key].view() for key in self.bracket_keys}, id=self.exit_id)
        sig = Signals(orders=orders, brackets=br, size=self.size.view())
        sig.size_steps = {k: g.view() for k, g in self.size_steps.items()}
        return sig

    def step(self, bar: Any, d: Decision) -> list[tuple[str, dict]]:
        """Bar ``t`` closed with decision ``d``: its fills happen, then ``d`` places its orders."""
        from aio.backtest import run_backtest

        for c in ("open", "high", "low", "close"):
            self.bars[c].append(getattr(bar, c))
        self.bars["spread_mean"].append(bar.spread_mean)
        self.ts.append(bar.ts_event)
        self.when.append(np.array(list(d.when) + [d.flatten], dtype=bool))
        self.price.append(np.array(list(d.price) + [np.nan]))
        for key in self.bracket_keys:
            self.br[key].append(d.brackets.get(key, np.nan))
        self.size.append(d.size)
        for k, v in d.size_steps.items():
            self.size_steps.setdefault(k, _Grow()).append(v)
        res = run_backtest(self.arrays(), self.signals(), self.bt)
        self.last = res
        t = self.ts.n - 1
        events: list[tuple[str, dict]] = []
        raw = res.raw_trades
        closed = raw[raw[:, E.T_XSIG] != E.EXIT_OPEN] if raw.shape[0] else raw
        for row in closed[self.n_closed:]:
            events.append(("trade", self._trade(row)))
        self.n_closed = closed.shape[0]
        pos = float(res.position_values[-1]) if res.position_values.shape[0] else 0.0
        if pos != self.position:
            events.append(("position", {"units": pos, "previous": self.position}))
            self.position = pos
        for k, s in enumerate(self.slots):
            if self.when.view()[k, t]:
                events.append(("order", {"slot": s.id, "action": s.action, "type": s.type,
                                         "price": float(self.price.view()[k, t]),
                                         "client_id": f"{t}:{s.id}"}))
        return events

    def arrays(self) -> dict[str, np.ndarray]:
        out = {c: g.view() for c, g in self.bars.items()}
        out["ts_event"] = self.ts.view()
        return out

    def _trade(self, row: np.ndarray) -> dict:
        names = [s.id for s in self.slots] + [self.exit_id, self.exit_id, "Open"]
        k = len(self.slots)

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
        """The run's result: an open position is booked at the last close, as the batch does."""
        if self.last is None:
            from aio.backtest import run_backtest

            return run_backtest(self.arrays(), self.signals(), self.bt)
        return self.last


def open_trades(raw: np.ndarray) -> int:
    return int((raw[:, E.T_XSIG] == E.EXIT_OPEN).sum()) if raw.shape[0] else 0
