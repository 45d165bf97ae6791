"""Maximum adverse and favourable excursion (MAE / MFE) of each trade, from the bars.

Pure numpy. A trade is open from its entry fill to its exit fill. Its path covers:
the entry price, the high and low of every bar from the entry bar up to the bar
before the exit bar (the entry bar included: a market entry fills at its open, so
the whole bar is inside the trade), and the exit price. The exit bar's own range is
left out: the trade ended at the exit fill, and what the bar did after it is not the
trade's. A trade opened and closed in one bar has only its two prices.

MAE <= 0 <= MFE, in price units and as a percent of the entry price; times ``qty``
they are money in the quote currency.
"""

from __future__ import annotations

import numpy as np


def excursions(high: np.ndarray, low: np.ndarray, entry_bar: np.ndarray, exit_bar: np.ndarray,
               entry_price: np.ndarray, exit_price: np.ndarray, side: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mae, mfe) per trade in price units; ``side`` is +1 long, -1 short."""
    high = np.asarray(high, dtype=np.float64)
    low = np.asarray(low, dtype=np.float64)
    eb = np.asarray(entry_bar, dtype=np.int64)
    xb = np.asarray(exit_bar, dtype=np.int64)
    ep = np.asarray(entry_price, dtype=np.float64)
    xp = np.asarray(exit_price, dtype=np.float64)
    sd = np.sign(np.asarray(side, dtype=np.float64))
    n = len(eb)
    if np.any(xb < eb):
        bad = int(np.flatnonzero(xb < eb)[0])
        raise ValueError(f"trade {bad}: exit bar {xb[bad]} before entry bar {eb[bad]}")
    if n and (eb.min() < 0 or xb.max() >= len(high)):
        raise ValueError(f"trade bars outside the {len(high)} bars given")
    hi = np.maximum(ep, xp)
    lo = np.minimum(ep, xp)
    for i in np.flatnonzero(xb > eb):  # bars strictly inside the trade's life (exit bar excluded)
        hi[i] = max(hi[i], high[eb[i]:xb[i]].max())
        lo[i] = min(lo[i], low[eb[i]:xb[i]].min())
    up = hi - ep  # >= 0
    down = lo - ep  # <= 0
    mae = np.where(sd > 0, down, -up)
    mfe = np.where(sd > 0, up, -down)
    return mae, mfe


def trade_excursions(trades, bars_frame):
    """The trades frame with mae/mfe columns: price units, % of entry, money (quote ccy)."""
    import polars as pl

    if trades.height == 0:
        return trades.with_columns(*(pl.lit(None, pl.Float64).alias(c) for c in
                                     ("mae", "mfe", "mae_pct", "mfe_pct", "mae_money", "mfe_money")))
    side = np.where(trades.get_column("side").to_numpy() == "long", 1.0, -1.0)
    ep = trades.get_column("entry_price").to_numpy()
    mae, mfe = excursions(bars_frame.get_column("high").to_numpy(), bars_frame.get_column("low").to_numpy(),
                          trades.get_column("entry_bar").to_numpy(), trades.get_column("exit_bar").to_numpy(),
                          ep, trades.get_column("exit_price").to_numpy(), side)
    qty = np.abs(trades.get_column("qty").to_numpy().astype(np.float64))
    return trades.with_columns(
        pl.Series("mae", mae), pl.Series("mfe", mfe),
        pl.Series("mae_pct", 100 * mae / ep), pl.Series("mfe_pct", 100 * mfe / ep),
        pl.Series("mae_money", mae * qty), pl.Series("mfe_money", mfe * qty),
    )
