"""The contract between strategy evaluation and the simulator.

A strategy's rules evaluate (once, vectorised) to per-bar arrays; the simulator
walks the bars once and applies TradingView's order semantics to them. An
Optuna trial therefore costs one rule evaluation plus one compiled pass.

Every array has one value per bar and describes what the strategy decides *at
that bar's close*; the simulator acts on it from the next bar on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

OrderType = Literal["market", "stop", "limit"]


@dataclass
class OrderSlot:
    """One named order, like a Pine ``strategy.entry``/``strategy.close``/``strategy.exit`` id.

    ``action``:
      - ``entry``: open a position in ``direction`` (+1 long, -1 short); an entry
        against an open opposite position reverses it (``strategy.entry`` semantics).
      - ``close``: market-close the position on the side ``direction`` (+1 long,
        -1 short, 0 either) (``strategy.close``).
    ``when[t]`` places (or re-prices) the order at bar t's close. For ``stop``/``limit``
    orders ``price[t]`` is the trigger price. A pending order stays pending until it
    fills, is cancelled by its OCA group, or (``cancel_when_false``) the bar close where
    ``when`` is false (Pine's ``else strategy.cancel(id)``).
    """

    id: str
    action: Literal["entry", "close"]
    direction: int
    type: OrderType
    when: np.ndarray
    price: np.ndarray | None = None
    cancel_when_false: bool = False
    oca: str | None = None  # OCA group with type "cancel": one fill cancels the others


@dataclass
class Brackets:
    """Protective exits of the open position (``strategy.exit(stop=, limit=)``).

    Prices per bar as known at that bar's close (nan: none); they apply from the next
    bar while a position is open. Stop-loss/take-profit in price or from ATR are
    computed by the strategy into these arrays.
    """

    stop_long: np.ndarray | None = None
    limit_long: np.ndarray | None = None
    stop_short: np.ndarray | None = None
    limit_short: np.ndarray | None = None
    # Distances (price units, > 0) from the entry fill price, taken from the bar whose
    # close decided the entry and then fixed for the life of the trade: the form
    # ATR- or percent-based stop-loss/take-profit take (strategy.exit(loss=, profit=)).
    stop_dist: np.ndarray | None = None
    take_dist: np.ndarray | None = None
    id: str = "Exit"


@dataclass
class Signals:
    orders: list[OrderSlot] = field(default_factory=list)
    brackets: Brackets | None = None
    # Position size per bar (units) decided at that bar's close by a sizer; nan/None
    # means the backtest's configured sizing applies.
    size: np.ndarray | None = None
    # Sizer audit trail: step name -> size after that step, per bar.
    size_steps: dict[str, np.ndarray] = field(default_factory=dict)


# -- cutting and joining along the bar axis (windows, stitched out-of-sample) ---------------


def _cut(a: np.ndarray | None, start: int, end: int) -> np.ndarray | None:
    return None if a is None else np.ascontiguousarray(a[start:end])


def slice_signals(sig: Signals, start: int, end: int) -> Signals:
    orders = [dataclasses.replace(o, when=_cut(o.when, start, end), price=_cut(o.price, start, end)) for o in sig.orders]
    br = None
    if sig.brackets is not None:
        b = sig.brackets
        br = dataclasses.replace(
            b, **{f.name: _cut(getattr(b, f.name), start, end) for f in dataclasses.fields(Brackets) if f.name != "id"}
        )
    return Signals(orders=orders, brackets=br, size=_cut(sig.size, start, end),
                   size_steps={k: _cut(v, start, end) for k, v in sig.size_steps.items()})


def _join(parts: Sequence[np.ndarray | None], lengths: Sequence[int], fill: float | bool) -> np.ndarray | None:
    if all(p is None for p in parts):
        return None
    arrs = []
    for p, n in zip(parts, lengths):
        arrs.append(np.full(n, fill) if p is None else p)
    return np.ascontiguousarray(np.concatenate(arrs))


def concat_signals(parts: Sequence[Signals]) -> Signals:
    """Consecutive windows of one strategy (the same order ids) as one Signals."""
    if not parts:
        raise ValueError("no signals to join")
    first = parts[0]
    lengths = [len(p.orders[0].when) if p.orders else 0 for p in parts]
    orders = []
    for i, o in enumerate(first.orders):
        slots = [p.orders[i] for p in parts]
        if any(s.id != o.id for s in slots):
            raise ValueError("signals to join must come from one strategy (same order ids)")
        orders.append(dataclasses.replace(
            o, when=_join([s.when for s in slots], lengths, False),
            price=_join([s.price for s in slots], lengths, np.nan)))
    br = None
    if any(p.brackets is not None for p in parts):
        template = next(p.brackets for p in parts if p.brackets is not None)
        fields = {}
        for f in dataclasses.fields(Brackets):
            if f.name == "id":
                continue
            fields[f.name] = _join([getattr(p.brackets, f.name) if p.brackets is not None else None for p in parts],
                                   lengths, np.nan)
        br = dataclasses.replace(template, **fields)
    size = _join([p.size for p in parts], lengths, np.nan)
    keys = list(dict.fromkeys(k for p in parts for k in p.size_steps))
    steps = {k: _join([p.size_steps.get(k) for p in parts], lengths, np.nan) for k in keys}
    return Signals(orders=orders, brackets=br, size=size, size_steps=steps)
