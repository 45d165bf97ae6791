"""The broker: TradingView's broker emulator on OHLC bars, one bar per ``step``.

Its state is explicit (lots, pending orders, cash, the instrument's tick and contract
size, the account's conversion rate and margin), so the same compiled bar loop
(:func:`_run`) serves the batch backtest (:func:`simulate`, every bar) and the live
engine (:func:`step` via :class:`aio.backtest.broker.Broker`, one closed bar per call).

Each bar ``t``:

1. at the open, pending market orders (decided at close ``t-1``) fill at ``open[t]``;
2. pending stop/limit orders and the position's brackets are checked along the
   assumed intrabar path open -> high -> low -> close (or open -> low -> high -> close
   when the low is nearer the open; a tie goes to the low first), the order whose
   price is reached first filling first, gaps filling at the price where the path is;
3. margin: with ``margin_long``/``margin_short`` set, when the equity at the bar's
   adverse extreme is below the required margin, four times the shortfall's units are
   liquidated at that extreme (TradingView's margin call);
4. at the close, the decisions of bar ``t`` place, re-price or cancel orders (with
   ``on_close`` market orders fill at ``close[t]`` right away);
5. equity is marked at ``close[t]``; equity <= 0 is ruin: everything is closed at the
   close and the broker stops trading.

Money: prices and gross P&L are in the quote currency (price difference x qty x
contract size); every booked amount is converted to account currency at the rate of
the moment it is booked (see :mod:`aio.instruments`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# order types / actions / commission modes (ints for numba)
MARKET, STOP, LIMIT = 0, 1, 2
ENTRY, CLOSE = 0, 1
COMM_PERCENT, COMM_PER_ORDER, COMM_PER_CONTRACT = 0, 1, 2

# exit signal codes below 0 (>= 0 is the order slot index)
EXIT_STOP, EXIT_TAKE, EXIT_OPEN, EXIT_MARGIN, EXIT_RUIN = -1, -2, -3, -4, -5

# trade buffer columns
(T_SIDE, T_EBAR, T_XBAR, T_EPX, T_XPX, T_QTY, T_PNL, T_COMM, T_ESIG, T_XSIG, T_DEC,
 T_PNLQ, T_ECOMM) = range(13)
T_NCOL = 13

# lot columns: one lot per filled entry (several only with pyramiding)
L_QTY, L_PX, L_BAR, L_SIG, L_COMM, L_SL, L_TP, L_DEC, L_COMMQ = range(9)
L_NCOL = 9

# integer state
S_NLOTS, S_SIDE, S_NTR, S_OVERFLOW, S_RUINED, S_RUIN_BAR, S_MARGIN_CALLS = range(7)
S_N = 7
# float state: cash (account currency), commissions charged (account currency)
ST_CASH, ST_COMM = 0, 1
ST_N = 2

# float config
CF_CRATE, CF_SLIP, CF_INVTICK, CF_CONTRACT, CF_MLONG, CF_MSHORT, CF_QSTEP, CF_QMIN, CF_QTY = range(9)
CF_N = 9
# int config
CI_CMODE, CI_MAXLOTS, CI_ONCLOSE, CI_QTYMODE, CI_HASBR = range(5)
CI_N = 5

# per-bar input row
(B_O, B_H, B_L, B_C, B_HS, B_RO, B_RC, B_SLL, B_TPL, B_SLS, B_TPS, B_SD, B_TD, B_SIZE) = range(14)
B_N = 14

# pending-order state columns (float): price, qty, decision bar, stop distance, take distance
P_PX, P_QTY, P_DEC, P_SD, P_TD = range(5)
P_N = 5


@njit(cache=True, forceinline=True)
def _commission(mode, rate, qty, px, contract, conv):
    """Commission in account currency: percent of the order value (converted), or cash
    per order / per contract booked verbatim in account currency (as TradingView does)."""
    if rate == 0.0:
        return 0.0
    if mode == COMM_PERCENT:
        return qty * px * contract * rate * 0.01 * conv
    if mode == COMM_PER_ORDER:
        return rate
    return qty * rate


@njit(cache=True, forceinline=True)
def _push_trade(tr, ist, side, ebar, xbar, epx, xpx, qty, pnl, comm, esig, xsig, dec, pnlq, ecomm):
    # ``tr`` is sized by the caller and never reallocated here: reassigning an array
    # inside the bar loop makes numba reference-count it on every iteration.
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
    tr[n, T_PNLQ] = pnlq
    tr[n, T_ECOMM] = ecomm
    ist[S_NTR] = n + 1


@njit(cache=True, forceinline=True)
def _close_part(lots, j, q, ist, st, tr, px, bar, xsig, exit_comm, conv, contract):
    """Close ``q`` units of lot ``j`` at ``px``: book the gross at ``conv``, record a trade."""
    side = ist[S_SIDE]
    lq = lots[j, L_QTY]
    frac = q / lq if lq > 0 else 1.0
    gross_q = side * q * (px - lots[j, L_PX]) * contract
    gross = gross_q * conv
    ecomm = lots[j, L_COMM] * frac
    ecommq = lots[j, L_COMMQ] * frac
    comm = ecomm + exit_comm
    # the entry commission left the cash at entry; the exit's leaves it now
    st[ST_CASH] += gross - exit_comm
    st[ST_COMM] += exit_comm
    xcq = exit_comm / conv if conv > 0 else 0.0
    _push_trade(tr, ist, side, lots[j, L_BAR], bar, lots[j, L_PX], px, q, gross - comm, comm,
                lots[j, L_SIG], xsig, lots[j, L_DEC], gross_q - ecommq - xcq, ecomm)
    if q >= lq:
        nl = ist[S_NLOTS]
        # column by column: a slice assignment would allocate a temporary (the rows overlap)
        for i in range(j, nl - 1):
            for col in range(L_NCOL):
                lots[i, col] = lots[i + 1, col]
        ist[S_NLOTS] = nl - 1
        if nl - 1 == 0:
            ist[S_SIDE] = 0
    else:
        lots[j, L_QTY] = lq - q
        lots[j, L_COMM] -= ecomm
        lots[j, L_COMMQ] -= ecommq


@njit(cache=True, forceinline=True)
def _close_all(lots, ist, st, tr, px, bar, xsig, cmode, crate, contract, conv):
    """Close every lot with one order (a per-order commission is shared by quantity)."""
    total = 0.0
    for j in range(ist[S_NLOTS]):
        total += lots[j, L_QTY]
    order_comm = _commission(cmode, crate, total, px, contract, conv)
    while ist[S_NLOTS] > 0:
        q = lots[0, L_QTY]
        if cmode == COMM_PER_ORDER:
            xc = order_comm * q / total if total > 0 else 0.0
        else:
            xc = _commission(cmode, crate, q, px, contract, conv)
        _close_part(lots, 0, q, ist, st, tr, px, bar, xsig, xc, conv, contract)


@njit(cache=True, forceinline=True)
def _open_lot(lots, ist, st, side, qty, px, bar, sig, dec, sd, td, cmode, crate, contract, conv):
    c = _commission(cmode, crate, qty, px, contract, conv)
    st[ST_CASH] -= c
    st[ST_COMM] += c
    j = ist[S_NLOTS]
    lots[j, L_QTY] = qty
    lots[j, L_PX] = px
    lots[j, L_BAR] = bar
    lots[j, L_SIG] = sig
    lots[j, L_COMM] = c
    lots[j, L_COMMQ] = c / conv if conv > 0 else 0.0
    lots[j, L_SL] = np.nan
    lots[j, L_TP] = np.nan
    if sd == sd and sd > 0:
        lots[j, L_SL] = px - side * sd
    if td == td and td > 0:
        lots[j, L_TP] = px + side * td
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


@njit(cache=True, forceinline=True)
def _fill_slot(k, raw, t, is_limit, is_entry, d, qty, dec, sd, td, lots, ist, st, tr, slip, max_lots,
               cmode, crate, contract, hs, conv):
    """Execute order slot ``k`` (entry or close towards ``d``, the order's ``qty``, decision
    bar and bracket distances) at raw price ``raw``; returns whether it filled. The caller
    retires the order and its OCA group (:func:`_retire`)."""
    side = ist[S_SIDE]
    cost = hs + (0.0 if is_limit else slip)
    if is_entry:
        if side == d and ist[S_NLOTS] >= max_lots:
            return False  # pyramiding limit: the entry is ignored
        px = raw + cost if d > 0 else raw - cost
        if side == -d:
            # strategy.entry against the position: close it, then open the new side
            _close_all(lots, ist, st, tr, px, t, k, cmode, crate, contract, conv)
        _open_lot(lots, ist, st, d, qty, px, t, k, dec, sd, td, cmode, crate, contract, conv)
        return True
    if side == 0 or (d != 0 and d != side):
        return False
    px = raw - cost if side > 0 else raw + cost
    _close_all(lots, ist, st, tr, px, t, k, cmode, crate, contract, conv)
    return True


@njit(cache=True, forceinline=True)
def _retire(k, pend, oca):
    """A filled order leaves the book, and so do the other orders of its OCA group."""
    pend[k] = False
    g = oca[k]
    if g >= 0:
        for i in range(pend.shape[0]):
            if oca[i] == g:
                pend[i] = False


@njit(cache=True, forceinline=True)
def mark(price, conv, lots, ist, st, contract):
    """The one mark-to-market rule: cash plus the open lots valued at ``price`` (P&L converted
    at ``conv``), and the signed position. Batch bars, stepped bars and margin calls use it."""
    unreal = 0.0
    pos = 0.0
    for j in range(ist[S_NLOTS]):
        unreal += ist[S_SIDE] * lots[j, L_QTY] * (price - lots[j, L_PX]) * contract
        pos += ist[S_SIDE] * lots[j, L_QTY]
    return st[ST_CASH] + unreal * conv, pos


@njit(cache=True, forceinline=True)
def _margin_call(t, lo, hi, hs, conv, lots, ist, st, tr, m_long, m_short, contract, qstep, cmode, crate):
    """TradingView's margin call at the bar's adverse extreme; returns whether one happened."""
    side = ist[S_SIDE]
    if side == 0:
        return False
    m = m_long if side > 0 else m_short
    if not m > 0:
        return False
    pa = lo if side > 0 else hi
    eq, signed = mark(pa, conv, lots, ist, st, contract)
    pos = signed * side  # exact: side is +-1
    unit_margin = pa * contract * conv * m
    if eq >= pos * unit_margin:
        return False
    short = pos - eq / unit_margin if unit_margin > 0 else pos
    x = 4.0 * short  # TradingView liquidates four times the shortfall
    x = np.ceil(x / qstep - 1e-9) * qstep
    if x > pos or eq <= 0:
        x = pos
    ist[S_MARGIN_CALLS] += 1
    px = pa - hs if side > 0 else pa + hs
    while x > 1e-12 and ist[S_NLOTS] > 0:
        q = min(x, lots[0, L_QTY])
        xc = _commission(cmode, crate, q, px, contract, conv)
        _close_part(lots, 0, q, ist, st, tr, px, t, EXIT_MARGIN, xc, conv, contract)
        x -= q
    return True


@njit(cache=True)
def step(t, bar, when_t, price_t, cf, ci, action, direction, otype, cancel_false, oca,
         lots, ist, st, pend, pf, tr):
    """Apply bar ``t`` (``bar``: one B_* row) and the decisions made at its close.

    ``when_t``/``price_t``: per order slot, whether this close places the order and
    at which trigger price. ``bar[B_SLL..B_TPS]`` are the bracket levels decided at the
    previous close; ``bar[B_HS]`` NaN counts as no spread. Returns (equity, signed
    position) at the close. The body is :func:`_run` over the one bar, the same code
    the batch :func:`simulate` runs over all bars.
    """
    out = np.empty(2)
    # int(): no literal arguments, so step and simulate share one compiled _run
    _run(int(t), int(t) + 1, int(0), bar[B_O:B_O + 1], bar[B_H:B_H + 1], bar[B_L:B_L + 1], bar[B_C:B_C + 1],
         bar[B_HS:B_HS + 1], bar[B_RO:B_RO + 1], bar[B_RC:B_RC + 1], when_t.reshape(1, -1), price_t.reshape(1, -1),
         bar[B_SIZE:B_SIZE + 1], bar[B_SLL:B_SLL + 1], bar[B_TPL:B_TPL + 1], bar[B_SLS:B_SLS + 1],
         bar[B_TPS:B_TPS + 1], bar[B_SD:B_SD + 1], bar[B_TD:B_TD + 1], cf, ci, action, direction, otype,
         cancel_false, oca, lots, ist, st, pend, pf, tr, out[0:1], out[1:2])
    return out[0], out[1]


@njit(cache=True)
def _run(t0, t1, bshift, o, h, l, c, half_spread, rate_o, rate_c, when, price, size,
         sl_long, tp_long, sl_short, tp_short, stop_dist, take_dist,
         cf, ci, action, direction, otype, cancel_false, oca, lots, ist, st, pend, pf, tr, equity, position):
    """Apply bars ``t0 .. t1-1`` and the decisions made at their closes: the broker.

    Row ``i = t - t0`` of each per-bar input belongs to bar ``t``; an empty input is
    absent (no spread, rate 1, the configured size, no bracket). The bracket levels in
    force at bar ``t`` are decided at the close before it: they are read at row
    ``i + bshift`` (``bshift=-1``: the rows are the bars' own decisions; ``0``: the
    caller has shifted them). ``size`` is the sizer's units (nan: the configured
    quantity); ``stop_dist``/``take_dist`` are decided at this close and kept with the
    orders it places. (equity, signed position) at each close go to ``equity[i]``,
    ``position[i]``.

    The whole bar loop is one function on purpose: numba reference-counts array
    arguments (atomic operations) at every call it cannot prove balanced, and a call
    per busy bar with the broker's 17 state and config arrays cost more than the bars
    themselves. The helpers are inlined by LLVM (``forceinline``) and take scalars
    besides the four books (lots, ist, st, tr), which are still counted once per fill.
    """
    K = action.shape[0]
    contract = cf[CF_CONTRACT]
    inv_tick = cf[CF_INVTICK]
    slip = cf[CF_SLIP]
    crate = cf[CF_CRATE]
    cmode = ci[CI_CMODE]
    max_lots = ci[CI_MAXLOTS]
    has_br = ci[CI_HASBR] != 0
    m_long, m_short = cf[CF_MLONG], cf[CF_MSHORT]
    has_margin = m_long > 0 or m_short > 0
    on_close = ci[CI_ONCLOSE] != 0
    max_fills = 4 * (K + max_lots) + 8
    has_hs = half_spread.shape[0] > 0
    has_rate = rate_o.shape[0] > 0
    has_size = size.shape[0] > 0
    has_sll, has_tpl = sl_long.shape[0] > 0, tp_long.shape[0] > 0
    has_sls, has_tps = sl_short.shape[0] > 0, tp_short.shape[0] > 0
    has_sd, has_td = stop_dist.shape[0] > 0, take_dist.shape[0] > 0
    for t in range(t0, t1):
        i = t - t0
        c_t = c[i]
        rc = rate_c[i] if has_rate else 1.0
        if ist[S_RUINED]:
            equity[i] = st[ST_CASH]
            position[i] = 0.0
            continue
        # A quiet bar (nothing pending, nothing decided, no bracket or margin to watch)
        # only marks the position; most bars are quiet.
        quiet = not has_margin and (ist[S_NLOTS] == 0 or not has_br)
        k = 0
        while quiet and k < K:
            if pend[k] or when[i, k]:
                quiet = False
            k += 1
        if quiet:
            eq, pos = mark(c_t, rc, lots, ist, st, contract)
            if eq > 0.0:
                equity[i] = eq
                position[i] = pos
                continue

        o_t, h_t, l_t = o[i], h[i], l[i]
        hs = half_spread[i] if has_hs else 0.0
        if hs != hs:
            hs = 0.0
        ro = rate_o[i] if has_rate else 1.0
        ib = i + bshift
        sll = sl_long[ib] if has_sll and ib >= 0 else np.nan
        tpl = tp_long[ib] if has_tpl and ib >= 0 else np.nan
        sls = sl_short[ib] if has_sls and ib >= 0 else np.nan
        tps = tp_short[ib] if has_tps and ib >= 0 else np.nan

        # 1. market orders decided at the previous close fill at this open, in slot order
        for k in range(K):
            if pend[k] and otype[k] == MARKET:
                if _fill_slot(k, o_t, t, False, action[k] == ENTRY, direction[k], pf[k, P_QTY], int(pf[k, P_DEC]),
                              pf[k, P_SD], pf[k, P_TD], lots, ist, st, tr, slip, max_lots, cmode, crate, contract,
                              hs, ro):
                    _retire(k, pend, oca)
                pend[k] = False

        # 2. stop/limit orders and brackets along the intrabar path (skipped when nothing
        #    could fire: the common case of market-only strategies)
        live = ist[S_NLOTS] > 0 and has_br
        if not live:
            for k in range(K):
                if pend[k] and otype[k] != MARKET:
                    live = True
                    break
        high_first = abs(h_t - o_t) < abs(l_t - o_t)
        p1 = h_t if high_first else l_t
        p2 = l_t if high_first else h_t
        cur = o_t
        seg = 0
        fills = 0
        while live and seg < 3 and fills < max_fills:
            end = p1 if seg == 0 else (p2 if seg == 1 else c_t)
            best = -1.0
            best_px = np.nan
            best_kind = 0  # 1 lot stop, 2 lot take, 3 slot
            best_idx = -1
            side = ist[S_SIDE]
            if side != 0:
                for j in range(ist[S_NLOTS]):
                    slv = lots[j, L_SL]
                    tpv = lots[j, L_TP]
                    if slv != slv:
                        slv = sll if side > 0 else sls
                    if tpv != tpv:
                        tpv = tpl if side > 0 else tps
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
                dist, px = _trigger(up, _on_grid(pf[k, P_PX], up, inv_tick), cur, end)
                if dist >= 0 and (best < 0 or dist < best):
                    best, best_px, best_kind, best_idx = dist, px, 3, k
            if best < 0:
                cur = end
                seg += 1
                continue
            fills += 1
            cur = best_px
            if best_kind == 3:
                k = best_idx
                if _fill_slot(k, best_px, t, otype[k] == LIMIT, action[k] == ENTRY, direction[k], pf[k, P_QTY],
                              int(pf[k, P_DEC]), pf[k, P_SD], pf[k, P_TD], lots, ist, st, tr, slip, max_lots, cmode,
                              crate, contract, hs, ro):
                    _retire(k, pend, oca)
            else:
                side = ist[S_SIDE]
                is_limit = best_kind == 2
                cost = hs + (0.0 if is_limit else slip)
                px = best_px - cost if side > 0 else best_px + cost
                q = lots[best_idx, L_QTY]
                xc = _commission(cmode, crate, q, px, contract, ro)
                _close_part(lots, best_idx, q, ist, st, tr, px, t, EXIT_STOP if best_kind == 1 else EXIT_TAKE, xc,
                            ro, contract)

        # 3. margin call at the adverse extreme
        if has_margin:
            _margin_call(t, l_t, h_t, hs, ro, lots, ist, st, tr, m_long, m_short, contract, cf[CF_QSTEP], cmode,
                         crate)

        # 4. the close: this bar's decisions place, re-price or cancel orders
        eq_close = mark(c_t, rc, lots, ist, st, contract)[0]
        size_t = size[i] if has_size else np.nan
        sd_t = stop_dist[i] if has_sd else np.nan
        td_t = take_dist[i] if has_td else np.nan
        for k in range(K):
            if when[i, k]:
                d = direction[k]
                if action[k] == ENTRY:
                    if ist[S_SIDE] == d and ist[S_NLOTS] >= max_lots:
                        continue  # TradingView does not place an entry beyond the pyramiding limit
                    if otype[k] != MARKET and price[i, k] != price[i, k]:
                        continue
                    q = abs(size_t)
                    if q != q:
                        qm = ci[CI_QTYMODE]
                        if qm == 0:
                            q = cf[CF_QTY]
                        elif qm == 1:  # percent of equity: an account-currency budget in units
                            q = eq_close * cf[CF_QTY] * 0.01 / (c_t * contract * rc)
                        else:  # cash: an account-currency amount in units
                            q = cf[CF_QTY] / (c_t * contract * rc)
                    qs = cf[CF_QSTEP]
                    q = np.floor(q / qs + 1e-9) * qs
                    if not (q > 0) or q < cf[CF_QMIN]:
                        continue
                    pf[k, P_QTY] = q
                    pf[k, P_SD] = sd_t
                    pf[k, P_TD] = td_t
                else:
                    if otype[k] == MARKET and (ist[S_SIDE] == 0 or (d != 0 and d != ist[S_SIDE])):
                        continue
                pend[k] = True
                pf[k, P_PX] = price[i, k] if otype[k] != MARKET else np.nan
                pf[k, P_DEC] = t
            elif cancel_false[k]:
                pend[k] = False
        if on_close:
            for k in range(K):
                if pend[k] and otype[k] == MARKET:
                    if _fill_slot(k, c_t, t, False, action[k] == ENTRY, direction[k], pf[k, P_QTY],
                                  int(pf[k, P_DEC]), pf[k, P_SD], pf[k, P_TD], lots, ist, st, tr, slip, max_lots,
                                  cmode, crate, contract, hs, rc):
                        _retire(k, pend, oca)
                    pend[k] = False

        # 5. mark to market at the close; ruin ends trading
        eq, pos = mark(c_t, rc, lots, ist, st, contract)
        if eq <= 0.0:
            if ist[S_NLOTS] > 0:
                _close_all(lots, ist, st, tr, c_t, t, EXIT_RUIN, cmode, crate, contract, rc)
            for k in range(K):
                pend[k] = False
            ist[S_RUINED] = 1
            ist[S_RUIN_BAR] = t
            equity[i] = st[ST_CASH]
            position[i] = 0.0
        else:
            equity[i] = eq
            position[i] = pos


@njit(cache=True)
def finish(t, close, rate, cf, ci, lots, ist, st, tr):
    """Close what is open at the last close (TradingView lists it as "Open"); the cash."""
    if ist[S_NLOTS] > 0:
        _close_all(lots, ist, st, tr, close, t, EXIT_OPEN, ci[CI_CMODE], cf[CF_CRATE], cf[CF_CONTRACT], rate)
    return st[ST_CASH]


@njit(cache=True)
def simulate(tr, o, h, l, c, half_spread, rate_o, rate_c, when, price, action, direction, otype,
             cancel_false, oca, size, sl_long, tp_long, sl_short, tp_short, stop_dist, take_dist,
             cf, ci, initial_capital):
    """The batch backtest: :func:`_run` over every bar (``when``/``price`` are bars x slots)."""
    n = o.shape[0]
    K = action.shape[0]
    equity = np.empty(n)
    position = np.empty(n)
    lots = np.empty((max(1, ci[CI_MAXLOTS]), L_NCOL))
    ist = np.zeros(S_N, dtype=np.int64)
    ist[S_RUIN_BAR] = -1
    st = np.zeros(ST_N)
    st[ST_CASH] = initial_capital
    pend = np.zeros(K, dtype=np.bool_)
    pf = np.full((K, P_N), np.nan)
    _run(int(0), n, int(-1), o, h, l, c, half_spread, rate_o, rate_c, when, price, size, sl_long, tp_long, sl_short,
         tp_short, stop_dist, take_dist, cf, ci, action, direction, otype, cancel_false, oca, lots, ist, st,
         pend, pf, tr, equity, position)
    if n > 0 and ist[S_RUINED] == 0 and ist[S_NLOTS] > 0:
        rc = rate_c[n - 1] if rate_c.shape[0] > 0 else 1.0
        equity[n - 1] = finish(n - 1, c[n - 1], rc, cf, ci, lots, ist, st, tr)
    return ist[S_NTR], ist[S_OVERFLOW], ist[S_RUIN_BAR], ist[S_MARGIN_CALLS], st[ST_COMM], equity, position
