"""The compiled bar loop: TradingView's broker emulator on OHLC bars.

One call walks the bars once. Per bar ``t``:

1. at the open, pending market orders (decided at close ``t-1``) fill at ``open[t]``;
2. pending stop/limit orders and the position's brackets are checked along the
   assumed intrabar path open -> high -> low -> close (or open -> low -> high -> close
   when the low is nearer the open; a tie goes to the low first), the order whose
   price is reached first filling first, gaps filling at the price where the path is;
3. at the close, the signals of bar ``t`` place, re-price or cancel orders (and with
   ``on_close`` market orders fill at ``close[t]`` right away);
4. equity is marked at ``close[t]``.

Everything is plain arrays so numba can compile it once (``cache=True``); the
Python wrapper in :mod:`aio.backtest.simulator` packs and unpacks them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# order types / actions / commission modes (ints for numba)
MARKET, STOP, LIMIT = 0, 1, 2
ENTRY, CLOSE = 0, 1
COMM_PERCENT, COMM_PER_ORDER, COMM_PER_CONTRACT = 0, 1, 2

# exit signal codes below 0 (>= 0 is the order slot index)
EXIT_STOP, EXIT_TAKE, EXIT_OPEN = -1, -2, -3

# trade buffer columns
T_SIDE, T_EBAR, T_XBAR, T_EPX, T_XPX, T_QTY, T_PNL, T_COMM, T_ESIG, T_XSIG, T_DEC = range(11)
T_NCOL = 11

# lot columns: one lot per filled entry (several only with pyramiding)
L_QTY, L_PX, L_BAR, L_SIG, L_COMM, L_SL, L_TP, L_DEC = range(8)
L_NCOL = 8

# integer state: number of lots, position side, number of trades, trades that did not fit
S_NLOTS, S_SIDE, S_NTR, S_OVERFLOW = 0, 1, 2, 3


@njit(cache=True)
def _commission(mode, rate, qty, px):
    if rate == 0.0:
        return 0.0
    if mode == COMM_PERCENT:
        return qty * px * rate * 0.01
    if mode == COMM_PER_ORDER:
        return rate
    return qty * rate


@njit(cache=True)
def _push_trade(tr, ist, side, ebar, xbar, epx, xpx, qty, pnl, comm, esig, xsig, dec):
    # ``tr`` is sized by the caller (one row per possible entry fill) and never
    # reallocated here: reassigning an array inside the bar loop makes numba
    # reference-count it on every iteration, which cost more than the simulation.
    n = ist[S_NTR]
    if n >= tr.shape[0]:
        ist[S_OVERFLOW] += 1
        return
    tr[n, T_SIDE] = side
    tr[n, T_EBAR] = ebar
    tr[n, T_XBAR] = xbar
    tr[n, T_EPX] = epx
    tr[n, T_XPX] = xpx
    tr[n, T_QTY] = qty
    tr[n, T_PNL] = pnl
    tr[n, T_COMM] = comm
    tr[n, T_ESIG] = esig
    tr[n, T_XSIG] = xsig
    tr[n, T_DEC] = dec
    ist[S_NTR] = n + 1


@njit(cache=True)
def _close_lot(lots, j, ist, st, tr, px, bar, xsig, exit_comm):
    side = ist[S_SIDE]
    q = lots[j, L_QTY]
    gross = side * q * (px - lots[j, L_PX])
    comm = lots[j, L_COMM] + exit_comm
    # the entry commission left the cash at entry; the exit's leaves it now
    st[0] += gross - exit_comm
    _push_trade(tr, ist, side, lots[j, L_BAR], bar, lots[j, L_PX], px, q, gross - comm, comm,
                     lots[j, L_SIG], xsig, lots[j, L_DEC])
    nl = ist[S_NLOTS]
    for i in range(j, nl - 1):
        lots[i, :] = lots[i + 1, :]
    ist[S_NLOTS] = nl - 1
    if nl - 1 == 0:
        ist[S_SIDE] = 0


@njit(cache=True)
def _close_all(lots, ist, st, tr, px, bar, xsig, cmode, crate):
    """Close every lot with one order (a per-order commission is shared by quantity)."""
    total = 0.0
    for j in range(ist[S_NLOTS]):
        total += lots[j, L_QTY]
    order_comm = _commission(cmode, crate, total, px)
    while ist[S_NLOTS] > 0:
        q = lots[0, L_QTY]
        if cmode == COMM_PER_ORDER:
            xc = order_comm * q / total if total > 0 else 0.0
        else:
            xc = _commission(cmode, crate, q, px)
        _close_lot(lots, 0, ist, st, tr, px, bar, xsig, xc)


@njit(cache=True)
def _open_lot(lots, ist, st, side, qty, px, bar, sig, dec, cmode, crate, stop_dist, take_dist):
    c = _commission(cmode, crate, qty, px)
    st[0] -= c
    j = ist[S_NLOTS]
    lots[j, L_QTY] = qty
    lots[j, L_PX] = px
    lots[j, L_BAR] = bar
    lots[j, L_SIG] = sig
    lots[j, L_COMM] = c
    lots[j, L_SL] = np.nan
    lots[j, L_TP] = np.nan
    if stop_dist.shape[0] > 0:
        d = stop_dist[dec]
        if d == d and d > 0:
            lots[j, L_SL] = px - side * d
    if take_dist.shape[0] > 0:
        d = take_dist[dec]
        if d == d and d > 0:
            lots[j, L_TP] = px + side * d
    lots[j, L_DEC] = dec
    ist[S_NLOTS] = j + 1
    ist[S_SIDE] = side


@njit(cache=True)
def _on_grid(level, up, inv_tick):
    """Snap an order price to the tick grid on the side where the order can fill.

    TradingView fills a buy stop at 1.1339334 at 1.13394 and a sell stop at 1.0857251
    at 1.08572: the first price on the grid that satisfies the trigger. Orders firing
    on the way up (buy stop, sell limit) round up, the others down.
    """
    if inv_tick <= 0.0 or level != level:
        return level
    x = level * inv_tick
    if up:
        return np.ceil(x - 1e-6) / inv_tick
    return np.floor(x + 1e-6) / inv_tick


@njit(cache=True)
def _trigger(up, level, cur, end):
    """Distance along the path from ``cur`` towards ``end`` until an order at ``level`` fires.

    ``up``: the order fires when price >= level (buy stop, sell limit); otherwise when
    price <= level (sell stop, buy limit). Already beyond the level: fires at once (0)
    at the current price, as a gap does at the open. Returns (-1, nan) for no fill.
    """
    if level != level:
        return -1.0, np.nan
    if up:
        if cur >= level:
            return 0.0, cur
        if end >= level:
            return level - cur, level
    else:
        if cur <= level:
            return 0.0, cur
        if end <= level:
            return cur - level, level
    return -1.0, np.nan


@njit(cache=True)
def _fill_slot(k, raw, t, is_limit, action, direction, oca, pend, pend_qty, pend_dec,
               lots, ist, st, tr, max_lots, slip, hs, cmode, crate, stop_dist, take_dist):
    """Execute order slot ``k`` at raw price ``raw``; returns whether it filled."""
    d = direction[k]
    side = ist[S_SIDE]
    if action[k] == ENTRY:
        if side == d and ist[S_NLOTS] >= max_lots:
            return False  # pyramiding limit: the entry is ignored
        cost = hs + (0.0 if is_limit else slip)
        px = raw + cost if d > 0 else raw - cost
        if side == -d:
            # strategy.entry against the position: close it, then open the new side
            _close_all(lots, ist, st, tr, px, t, k, cmode, crate)
        _open_lot(lots, ist, st, d, pend_qty[k], px, t, k, pend_dec[k], cmode, crate, stop_dist, take_dist)
    else:
        if side == 0 or (d != 0 and d != side):
            return False
        cost = hs + (0.0 if is_limit else slip)
        px = raw - cost if side > 0 else raw + cost
        _close_all(lots, ist, st, tr, px, t, k, cmode, crate)
    pend[k] = False
    g = oca[k]
    if g >= 0:
        for i in range(pend.shape[0]):
            if oca[i] == g:
                pend[i] = False
    return True


@njit(cache=True)
def simulate(
    tr, o, h, l, c, half_spread,
    when, price, action, direction, otype, cancel_false, oca,
    size, qty_mode, qty,
    cmode, crate, slip, inv_tick, max_lots, on_close, initial_capital,
    sl_long, tp_long, sl_short, tp_short, stop_dist, take_dist,
):
    n = o.shape[0]
    K = action.shape[0]
    equity = np.empty(n)
    position = np.empty(n)
    lots = np.empty((max_lots, L_NCOL))
    ist = np.zeros(4, dtype=np.int64)
    st = np.zeros(1)
    st[0] = initial_capital
    pend = np.zeros(K, dtype=np.bool_)
    pend_px = np.full(K, np.nan)
    pend_qty = np.zeros(K)
    pend_dec = np.zeros(K, dtype=np.int64)
    has_sl_long = sl_long.shape[0] > 0
    has_tp_long = tp_long.shape[0] > 0
    has_sl_short = sl_short.shape[0] > 0
    has_tp_short = tp_short.shape[0] > 0
    has_size = size.shape[0] > 0
    has_brackets = (has_sl_long or has_tp_long or has_sl_short or has_tp_short
                    or stop_dist.shape[0] > 0 or take_dist.shape[0] > 0)
    max_fills = 4 * (K + max_lots) + 8

    for t in range(n):
        hs = half_spread[t] if half_spread.shape[0] > 0 else 0.0
        if hs != hs:
            hs = 0.0

        # 1. market orders decided at the previous close fill at this open, in slot order
        for k in range(K):
            if pend[k] and otype[k] == MARKET:
                _fill_slot(k, o[t], t, False, action, direction, oca, pend, pend_qty, pend_dec,
                                   lots, ist, st, tr, max_lots, slip, hs, cmode, crate, stop_dist, take_dist)
                pend[k] = False

        # 2. stop/limit orders and brackets along the intrabar path (skipped when
        #    nothing could fire: the common case of market-only strategies)
        live = ist[S_NLOTS] > 0 and has_brackets
        if not live:
            for k in range(K):
                if pend[k] and otype[k] != MARKET:
                    live = True
                    break
        high_first = abs(h[t] - o[t]) < abs(l[t] - o[t])
        p1 = h[t] if high_first else l[t]
        p2 = l[t] if high_first else h[t]
        cur = o[t]
        seg = 0
        fills = 0
        while live and seg < 3 and fills < max_fills:
            end = p1 if seg == 0 else (p2 if seg == 1 else c[t])
            best = -1.0
            best_px = np.nan
            best_kind = 0  # 1 lot stop, 2 lot take, 3 slot
            best_idx = -1
            side = ist[S_SIDE]
            if side != 0:
                for j in range(ist[S_NLOTS]):
                    slv = lots[j, L_SL]
                    tpv = lots[j, L_TP]
                    if t > 0:
                        if slv != slv:
                            if side > 0 and has_sl_long:
                                slv = sl_long[t - 1]
                            elif side < 0 and has_sl_short:
                                slv = sl_short[t - 1]
                        if tpv != tpv:
                            if side > 0 and has_tp_long:
                                tpv = tp_long[t - 1]
                            elif side < 0 and has_tp_short:
                                tpv = tp_short[t - 1]
                    # long: stop sells when price <= level, take when >= level
                    dist, px = _trigger(side < 0, _on_grid(slv, side < 0, inv_tick), cur, end)
                    if dist >= 0 and (best < 0 or dist < best):
                        best, best_px, best_kind, best_idx = dist, px, 1, j
                    dist, px = _trigger(side > 0, _on_grid(tpv, side > 0, inv_tick), cur, end)
                    if dist >= 0 and (best < 0 or dist < best):
                        best, best_px, best_kind, best_idx = dist, px, 2, j
            for k in range(K):
                if not pend[k] or otype[k] == MARKET:
                    continue
                d = direction[k]
                if action[k] == ENTRY:
                    if side == d and ist[S_NLOTS] >= max_lots:
                        continue
                    buy = d > 0
                else:
                    if side == 0 or (d != 0 and d != side):
                        continue
                    buy = side < 0
                # buy stop and sell limit fire on the way up
                up = buy if otype[k] == STOP else (not buy)
                dist, px = _trigger(up, _on_grid(pend_px[k], up, inv_tick), cur, end)
                if dist >= 0 and (best < 0 or dist < best):
                    best, best_px, best_kind, best_idx = dist, px, 3, k
            if best < 0:
                cur = end
                seg += 1
                continue
            fills += 1
            cur = best_px
            if best_kind == 3:
                _fill_slot(best_idx, best_px, t, otype[best_idx] == LIMIT, action, direction, oca, pend,
                                   pend_qty, pend_dec, lots, ist, st, tr, max_lots, slip, hs, cmode, crate,
                                   stop_dist, take_dist)
            else:
                side = ist[S_SIDE]
                is_limit = best_kind == 2
                cost = hs + (0.0 if is_limit else slip)
                px = best_px - cost if side > 0 else best_px + cost
                xc = _commission(cmode, crate, lots[best_idx, L_QTY], px)
                _close_lot(lots, best_idx, ist, st, tr, px, t, EXIT_STOP if best_kind == 1 else EXIT_TAKE, xc)

        # 3. the close: this bar's signals place, re-price or cancel orders
        unreal = 0.0
        for j in range(ist[S_NLOTS]):
            unreal += ist[S_SIDE] * lots[j, L_QTY] * (c[t] - lots[j, L_PX])
        eq_close = st[0] + unreal
        for k in range(K):
            if when[k, t]:
                d = direction[k]
                if action[k] == ENTRY:
                    if ist[S_SIDE] == d and ist[S_NLOTS] >= max_lots:
                        continue  # TradingView does not place an entry beyond the pyramiding limit
                    if otype[k] != MARKET and price[k, t] != price[k, t]:
                        continue
                    q = np.nan
                    if has_size:
                        q = abs(size[t])
                    if q != q:
                        if qty_mode == 0:
                            q = qty
                        elif qty_mode == 1:
                            q = eq_close * qty * 0.01 / c[t]
                        else:
                            q = qty / c[t]
                    if not (q > 0):
                        continue
                    pend_qty[k] = q
                else:
                    if otype[k] == MARKET and (ist[S_SIDE] == 0 or (d != 0 and d != ist[S_SIDE])):
                        continue
                pend[k] = True
                pend_px[k] = price[k, t] if otype[k] != MARKET else np.nan
                pend_dec[k] = t
            elif cancel_false[k]:
                pend[k] = False
        if on_close:
            for k in range(K):
                if pend[k] and otype[k] == MARKET:
                    _fill_slot(k, c[t], t, False, action, direction, oca, pend, pend_qty, pend_dec,
                                       lots, ist, st, tr, max_lots, slip, hs, cmode, crate, stop_dist, take_dist)
                    pend[k] = False

        # 4. mark to market at the close
        unreal = 0.0
        pos = 0.0
        for j in range(ist[S_NLOTS]):
            unreal += ist[S_SIDE] * lots[j, L_QTY] * (c[t] - lots[j, L_PX])
            pos += ist[S_SIDE] * lots[j, L_QTY]
        equity[t] = st[0] + unreal
        position[t] = pos

    # an open position is closed at the last close (TradingView lists it as "Open")
    if n > 0 and ist[S_NLOTS] > 0:
        _close_all(lots, ist, st, tr, c[n - 1], n - 1, EXIT_OPEN, cmode, crate)
        equity[n - 1] = st[0]
    return ist[S_NTR], ist[S_OVERFLOW], equity, position
