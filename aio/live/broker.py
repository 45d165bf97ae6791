"""The paper broker: the backtest's :class:`aio.backtest.broker.Broker`, plus what live adds.

All bookkeeping (the compiled ``step``'s state, trade rows, equity, rates, the
``BacktestResult``) is the backtest's stepped ``Broker``: one broker for the batch
backtest and the paper run. This layer adds only what a stream needs:

- the controller's ``Flatten`` order, an extra market-close slot after the strategy's;
- the conversion rate of each bar from that bar alone (``ConversionPlan.bar_rates``);
- the bar's events for the journal: trades closed, the position, orders placed.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from aio.backtest.broker import Broker, Decisions
from aio.backtest.signals import OrderSlot, Signals
from aio.errors import ConfigError

BRACKET_KEYS = ("stop_long", "limit_long", "stop_short", "limit_short", "stop_dist", "take_dist")
FLATTEN_ID = "Flatten"  # the controller's market close (flatten), an extra order slot after the strategy's


def bracket_keys(sig: Signals) -> tuple[str, ...]:
    br = sig.brackets
    return tuple(k for k in BRACKET_KEYS if br is not None and getattr(br, k) is not None)


def _num(x: float) -> float | None:
    """NaN as None: the journal's text for it either way (``canon``), without its slow path."""
    x = float(x)
    return x if x == x else None


def decision_payload(d: Decisions, keys: tuple[str, ...]) -> dict[str, Any]:
    """A decision as the journal keeps it (the strategy's slots; the flatten slot as ``flatten``)."""
    return {"when": [bool(w) for w in d.when[:-1]], "price": [_num(p) for p in d.price[:-1]],
            "brackets": {k: _num(getattr(d, k)) for k in keys}, "size": _num(d.size),
            "size_steps": {k: _num(v) for k, v in d.size_steps.items()}, "flatten": bool(d.when[-1])}


class DecisionTexts:
    """Decisions as journal text, memoised: most closes decide the same thing (usually nothing),
    so the text of each distinct decision is built once. Keyed by the exact bits of every field
    (NaN and -0.0 included), so a hit is the text ``canon(decision_payload(d))`` would give."""

    LIMIT = 4096  # distinct decisions kept (bracket levels change every bar: bounded, not grown)

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.memo: dict[tuple, Any] = {}
        self._pack = struct.Struct(f"<{1 + len(keys)}d").pack  # the exact bits: NaN and -0.0 kept apart

    def __call__(self, d: Decisions) -> Any:
        from aio.live.journal import Canonical, canon

        key = (d.when.tobytes(), d.price.tobytes(), self._pack(d.size, *[getattr(d, k) for k in self.keys]))
        if d.size_steps:
            key += (tuple(d.size_steps), struct.pack(f"<{len(d.size_steps)}d", *d.size_steps.values()))
        hit = self.memo.get(key)
        if hit is None:
            if len(self.memo) >= self.LIMIT:
                self.memo.clear()
            hit = self.memo[key] = Canonical(canon(decision_payload(d, self.keys)))
        return hit


class PaperBroker:
    def __init__(self, sig: Signals, bt: Any, plan: Any) -> None:
        from aio.backtest.simulator import OrderLayout

        if plan.kind not in ("none", "fixed", "self_inverse"):
            raise ConfigError(
                f"the paper engine converts P&L to the account currency from the traded bars alone; a conversion "
                f"through another pair ({plan.pair}) needs that pair's stream: set backtest.account_currency to the "
                "quote currency or backtest.conversion_rate to a fixed rate")
        flat = OrderSlot(FLATTEN_ID, "close", 0, "market", np.zeros(1, dtype=bool))
        layout = OrderLayout.of(Signals(orders=[*sig.orders, flat], brackets=sig.brackets))
        self.bracket_keys = bracket_keys(sig)
        self.decision_text = DecisionTexts(self.bracket_keys)
        self.broker = Broker(layout, bt, bool(self.bracket_keys))
        self.plan = plan
        self.ids = layout.ids

    @property
    def pos(self) -> float:
        return self.broker.pos

    @property
    def n_closed(self) -> int:
        return self.broker.n_trades

    def step(self, bar: Any, d: Decisions) -> list[tuple[str, dict]]:
        """Bar ``t`` closed with decision ``d``: its fills happen, then ``d`` places its orders."""
        b = self.broker
        t = b.t
        n_before, pos_before = b.n_trades, b.pos
        ro, rc = self.plan.bar_rates(bar.open, bar.close)
        _, pos = b.step(bar.ts_event, bar.open, bar.high, bar.low, bar.close, d, spread_mean=bar.spread_mean,
                        rate_open=ro, rate_close=rc)
        events: list[tuple[str, dict]] = [("trade", b.trade(i)) for i in range(n_before, b.n_trades)]
        if pos != pos_before:
            events.append(("position", {"units": pos, "previous": pos_before}))
        for k in (np.flatnonzero(d.when) if np.count_nonzero(d.when) else ()):
            events.append(("order", {"slot": self.ids[k], "price": _num(d.price[k]),
                                     "pending": bool(b.pend[k]), "client_id": f"{t}:{self.ids[k]}"}))
        return events

    def result(self):
        """The run so far as the batch reports it (an open position booked at the last close);
        the broker can go on stepping afterwards."""
        return self.broker.result()
