"""Sizers in Pine v6: fixed, percent of equity and ATR risk (with limits) only.

The others read a model's confidence or the trade history, which a Pine script
cannot reproduce; asking to export them raises :class:`ExportError` with the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from aio.errors import ExportError
from aio.sizing.chain import parse_chain

QTY_TYPES = {"fixed": "strategy.fixed", "percent_of_equity": "strategy.percent_of_equity", "cash": "strategy.cash"}


def _num(v: float) -> str:
    f = float(v)
    return repr(int(f)) + ".0" if f.is_integer() and abs(f) < 1e15 else repr(f)


@dataclass
class PineSizing:
    strategy_args: list[tuple[str, str]]  # default_qty_type / default_qty_value
    lines: list[str] = field(default_factory=list)  # series computing the order quantity
    qty: str | None = None  # per-order `qty=` of strategy.entry (None: the defaults apply)


def pine_sizing(section: Mapping[str, Any] | None, bt: Any) -> PineSizing:
    """Pine for the sizer ``section`` under backtest config ``bt``."""
    chain = parse_chain(section)
    defaults = [("default_qty_type", QTY_TYPES[getattr(bt, "qty_type", "fixed")]),
                ("default_qty_value", _num(getattr(bt, "qty", 1.0)))]
    if chain is None or (chain.is_plain("fixed") and chain.steps[0][1].units is None):
        return PineSizing(defaults)
    if chain.is_plain("percent_of_equity"):
        return PineSizing([("default_qty_type", "strategy.percent_of_equity"),
                           ("default_qty_value", _num(chain.steps[0][1].percent))])
    refused = [s.name for s, _ in chain.steps if not s.pine]
    if refused or len(chain.steps) > 1:
        names = refused or [s.name for s, _ in chain.steps[1:]]
        raise ExportError(
            f"sizer step(s) {', '.join(names)} cannot be expressed in Pine (they need model confidence, "
            f"trade history or several chained steps); export supports a single sizer=fixed, "
            f"percent_of_equity or vol_target with limits. Export with one of those or skip the export"
        )
    step, c = chain.steps[0]
    lines = ["sizer_equity = strategy.initial_capital + strategy.netprofit"]
    if step.name == "fixed":
        lines.append(f"float sizer_qty = {_num(c.units)}")
    elif step.name == "percent_of_equity":
        lines.append(f"float sizer_qty = {_num(c.percent)} / 100.0 * sizer_equity / close")
    else:  # vol_target
        eq = "sizer_equity" if c.compound else "strategy.initial_capital"
        lines.append(f"sizer_atr = ta.atr({int(c.atr_length)})")
        lines.append(f"float sizer_qty = nz({_num(c.risk_pct)} / 100.0 * {eq} / ({_num(c.atr_mult)} * sizer_atr))")
    lim = chain.limits
    if lim.max_leverage is not None:
        lines.append(f"sizer_qty := math.min(sizer_qty, {_num(lim.max_leverage)} * math.max(sizer_equity, 0) / close)")
    if lim.max_units is not None:
        lines.append(f"sizer_qty := math.min(sizer_qty, {_num(lim.max_units)})")
    if lim.lot_step is not None:
        lines.append(f"sizer_qty := math.floor(sizer_qty / {_num(lim.lot_step)} + 1e-9) * {_num(lim.lot_step)}")
    if lim.min_units > 0:
        lines.append(f"sizer_qty := sizer_qty < {_num(lim.min_units)} ? 0.0 : sizer_qty")
    return PineSizing(defaults, lines, "sizer_qty")
