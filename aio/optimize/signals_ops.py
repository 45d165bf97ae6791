"""Cutting and joining Signals along the bar axis (for windows and stitched OOS)."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from aio.backtest.signals import Brackets, Signals


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
