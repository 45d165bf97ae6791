"""Money must add up: checks run after every backtest.

A broken invariant raises :class:`InvariantError` naming it; it never becomes a quiet
number. The equity path is rebuilt independently of the broker, from the trade list
alone (realised P&L of closed trades plus the open trades' marks at each close), so a
bookkeeping slip in the broker cannot hide behind its own arithmetic.
"""

from __future__ import annotations

import numpy as np

from aio.backtest import engine as E
from aio.errors import AioError

REL_TOL = 1e-9


class InvariantError(AioError):
    """The backtest's books do not balance."""


def _scale(result) -> float:
    r = result.raw_trades
    return max(float(result.config.initial_capital), float(np.abs(r[:, E.T_PNL]).sum()) if r.size else 0.0, 1.0)


def rebuilt_equity(result) -> np.ndarray:
    """Equity at each close from the trades alone: capital + closed P&L + open marks - open entry fees."""
    r = result.raw_trades
    eq = result.equity_values
    n = eq.shape[0]
    cap = float(result.config.initial_capital)
    out = np.full(n, cap)
    if r.shape[0] == 0 or n == 0:
        return out
    close = result.close
    rc = result.rates[1] if result.rates is not None and result.rates[1].shape[0] else np.ones(n)
    contract = result.config.instrument_spec().contract_size
    eb = r[:, E.T_EBAR].astype(np.int64)
    xb = r[:, E.T_XBAR].astype(np.int64)
    side_q = r[:, E.T_SIDE] * r[:, E.T_QTY]
    realised = np.zeros(n)
    np.add.at(realised, xb, r[:, E.T_PNL])
    # open during [eb, xb): signed units, their cost basis, and their already-paid entry fees
    d_units = np.zeros(n + 1)
    d_basis = np.zeros(n + 1)
    d_fee = np.zeros(n + 1)
    np.add.at(d_units, eb, side_q)
    np.add.at(d_units, xb, -side_q)
    np.add.at(d_basis, eb, side_q * r[:, E.T_EPX])
    np.add.at(d_basis, xb, -side_q * r[:, E.T_EPX])
    np.add.at(d_fee, eb, r[:, E.T_ECOMM])
    np.add.at(d_fee, xb, -r[:, E.T_ECOMM])
    units = np.cumsum(d_units)[:n]
    basis = np.cumsum(d_basis)[:n]
    fees = np.cumsum(d_fee)[:n]
    open_mark = (units * close - basis) * contract * rc
    out = cap + np.cumsum(realised) + open_mark - fees
    if result.ruin_bar is not None:
        out[result.ruin_bar + 1:] = out[result.ruin_bar]
    return out


def check(result) -> None:
    """Assert the books balance; raises InvariantError naming the first broken rule."""
    r = result.raw_trades
    eq = result.equity_values
    cap = float(result.config.initial_capital)
    tol = REL_TOL * _scale(result)
    if eq.shape[0] == 0:
        return
    pnl_sum = float(r[:, E.T_PNL].sum()) if r.size else 0.0
    final = float(eq[-1]) - cap
    if abs(pnl_sum - final) > tol:
        raise InvariantError(
            f"invariant 'trade P&L sums to final equity - initial capital' broken: trades sum to {pnl_sum!r}, "
            f"equity moved {final!r} (difference {pnl_sum - final!r})"
        )
    if result.close is not None:
        rebuilt = rebuilt_equity(result)
        bad = np.abs(rebuilt - eq) > tol
        if bad.any():
            t = int(np.argmax(bad))
            raise InvariantError(
                f"invariant 'equity = cash + open P&L' broken at bar {t}: broker equity {eq[t]!r}, "
                f"rebuilt from the trades {rebuilt[t]!r}"
            )
    comm = float(r[:, E.T_COMM].sum()) if r.size else 0.0
    if abs(comm - float(result.commission_total)) > tol:
        raise InvariantError(
            f"invariant 'commissions add up' broken: trades list {comm!r}, the broker charged "
            f"{result.commission_total!r}"
        )
    if r.size and (r[:, E.T_COMM] < -tol).any():
        raise InvariantError("invariant 'commissions add up' broken: a trade has a negative commission")
    from aio.backtest.metrics import drawdown_series

    dd, _ = drawdown_series(eq, cap)
    if (dd > tol).any():
        raise InvariantError("invariant 'drawdown <= 0' broken")
