"""Forward-looking labels of decision bars: they use bars ``t+1 .. t+horizon`` and no others.

Entry reference is ``close[t]`` (known at the decision). With ``subtract_spread`` the
label pays ``spread_mean[t]`` once (mid prices; a round trip crosses half the spread
twice): a long earns ``r - s``, a short ``-r - s``.

- ``fwd_ret_pips_h``: ``close[t+h] - close[t]`` in pips;
- ``fwd_ret_atr_h``: the same in units of ``ATR[t]``;
- ``fwd_net_pips_h``: what survives the spread, ``sign(r) * max(|r| - s, 0)`` in pips;
- ``dir_h``: 2 up (``r - s > dz``), 0 down (``-r - s > dz``), 1 flat otherwise, with the
  dead zone ``dz`` in ATR[t] units or pips;
- triple barrier (optional): long barriers ``close[t] + tp*ATR[t]`` / ``close[t] - sl*ATR[t]``,
  time limit ``max_bars``. ``tb_label`` +1 take-profit first, -1 stop-loss first (also when
  both are touched inside one bar: the conservative reading), 0 time limit; ``tb_bars``
  bars to the exit; ``tb_ret_pips`` exit price minus entry, less the spread, in pips.
"""

from __future__ import annotations

import numpy as np

from aio.dataset.config import DatasetConfig


def compute_labels(
    arrays: dict[str, np.ndarray],
    atr: np.ndarray,
    ends: np.ndarray,
    cfg: DatasetConfig,
    pip: float,
) -> dict[str, np.ndarray]:
    """Labels for decision bars ``ends`` (each needs ``ends + cfg.label_horizon`` inside the data)."""
    c = np.asarray(arrays["close"], dtype=np.float64)
    ends = np.asarray(ends, dtype=np.int64)
    if ends.size and ends.max() + cfg.label_horizon >= len(c):
        raise ValueError("a decision bar's label horizon runs past the data end; drop those rows")
    entry = c[ends]
    a = atr[ends]
    cost = np.asarray(arrays["spread_mean"], dtype=np.float64)[ends] if cfg.subtract_spread else np.zeros(len(ends))
    cost = np.nan_to_num(cost, nan=0.0)
    dz = cfg.dead_zone * (a if cfg.dead_zone_unit == "atr" else pip)
    out: dict[str, np.ndarray] = {}
    for h in (int(x) for x in cfg.horizons):
        r = c[ends + h] - entry
        out[f"fwd_ret_pips_{h}"] = r / pip
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"fwd_ret_atr_{h}"] = np.where(a > 0, r / a, np.nan)
        out[f"fwd_net_pips_{h}"] = np.sign(r) * np.maximum(np.abs(r) - cost, 0.0) / pip
        d = np.ones(len(ends), dtype=np.int8)
        d[r - cost > dz] = 2
        d[-r - cost > dz] = 0
        out[f"dir_{h}"] = d
    tb = cfg.triple_barrier
    if tb.enabled:
        out.update(triple_barrier(arrays, a, entry, cost, ends, tb.take_profit_atr, tb.stop_loss_atr, tb.max_bars, pip))
    return out


def triple_barrier(
    arrays: dict[str, np.ndarray],
    atr_t: np.ndarray,
    entry: np.ndarray,
    cost: np.ndarray,
    ends: np.ndarray,
    tp: float,
    sl: float,
    max_bars: int,
    pip: float,
) -> dict[str, np.ndarray]:
    h = np.asarray(arrays["high"], dtype=np.float64)
    l = np.asarray(arrays["low"], dtype=np.float64)
    c = np.asarray(arrays["close"], dtype=np.float64)
    path = ends[:, None] + np.arange(1, max_bars + 1)[None, :]  # bars t+1 .. t+max_bars
    upper = (entry + tp * atr_t)[:, None]
    lower = (entry - sl * atr_t)[:, None]
    hit_up = h[path] >= upper
    hit_dn = l[path] <= lower
    any_hit = hit_up | hit_dn
    first = np.where(any_hit.any(axis=1), any_hit.argmax(axis=1), max_bars - 1)
    rows = np.arange(len(ends))
    touched = any_hit[rows, first]
    stop = touched & hit_dn[rows, first]  # a bar touching both counts as the stop
    take = touched & ~stop
    label = np.where(take, 1, np.where(stop, -1, 0)).astype(np.int8)
    exit_price = np.where(take, upper[:, 0], np.where(stop, lower[:, 0], c[path[rows, first]]))
    valid = np.isfinite(atr_t) & (atr_t > 0)
    return {
        "tb_label": np.where(valid, label, 0).astype(np.int8),
        "tb_bars": (first + 1).astype(np.int32),
        "tb_ret_pips": np.where(valid, (exit_price - entry - cost) / pip, np.nan),
    }
