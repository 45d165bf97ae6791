"""Dataset rows as pattern-library rows: embedding + what price did next.

Outcomes follow the library's contract (aio.store.records): ``fwd_return`` the simple
return close[t+h] / close[t] - 1, ``label`` -1/0/+1 (the dataset's down/flat/up class),
``mfe`` / ``mae`` the highest high / lowest low over t+1..t+h relative to close[t],
``label_end_ts`` the close (ts_init) of bar t+h: the first moment the outcome is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from aio.models.data import Table


@dataclass
class Outcomes:
    fwd_return: np.ndarray
    label: np.ndarray
    mfe: np.ndarray
    mae: np.ndarray
    label_end_ts: np.ndarray
    close: np.ndarray  # close[t], to turn simple returns into pips


def outcomes(table: Table, bars) -> Outcomes:
    f = bars.frame
    close = f.get_column("close").to_numpy().astype(np.float64)
    high = f.get_column("high").to_numpy().astype(np.float64)
    low = f.get_column("low").to_numpy().astype(np.float64)
    ts_init = f.get_column("ts_init").to_numpy().astype(np.int64)
    t = table.bar_index
    h = table.horizon
    if len(t) and (t.max() + h >= len(close) or not np.array_equal(ts_init[t], table.ts_init)):
        raise ValueError("the bars given are not the ones the dataset was built from")
    path = t[:, None] + np.arange(1, h + 1)[None, :]
    c0 = close[t]
    return Outcomes(
        fwd_return=close[t + h] / c0 - 1.0,
        label=(table.y - 1).astype(np.int8),  # 0 down, 1 flat, 2 up -> -1, 0, +1
        mfe=high[path].max(axis=1) / c0 - 1.0,
        mae=low[path].min(axis=1) / c0 - 1.0,
        label_end_ts=ts_init[t + h],
        close=c0,
    )


def thumbnails(images: np.ndarray, level: int = 6) -> list[bytes]:
    """PNG bytes of (n, H, W, 3) uint8 images as they are (already small), without PIL's
    slow ``optimize`` pass: ~0.2 ms per 64 px chart."""
    import io

    from PIL import Image

    out = []
    for a in images:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG", compress_level=level)
        out.append(buf.getvalue())
    return out


def pattern_table(table: Table, out: Outcomes, embeddings: np.ndarray, model_id: str, symbol: str, timeframe: str,
                  run_id: str | None = None, rows: np.ndarray | None = None, thumbnails: list[bytes] | None = None) -> pa.Table:
    """Arrow rows for ``PatternLibrary.add_patterns`` (all rows, or ``rows``)."""
    rows = np.arange(len(table)) if rows is None else np.asarray(rows, dtype=np.int64)
    n = len(rows)
    emb = np.ascontiguousarray(embeddings[rows], dtype=np.float32)
    cols = {
        "model_id": pa.array([model_id] * n, pa.string()),
        "symbol": pa.array([symbol] * n, pa.string()),
        "timeframe": pa.array([timeframe] * n, pa.string()),
        "ts_init": pa.array(table.ts_init[rows], pa.int64()),
        "label_end_ts": pa.array(out.label_end_ts[rows], pa.int64()),
        "horizon_bars": pa.array(np.full(n, table.horizon, dtype=np.int32)),
        "regime": pa.array([None if r is None else str(r) for r in table.regime[rows]], pa.string()),
        "fwd_return": pa.array(out.fwd_return[rows], pa.float64()),
        "label": pa.array(out.label[rows], pa.int8()),
        "mfe": pa.array(out.mfe[rows], pa.float64()),
        "mae": pa.array(out.mae[rows], pa.float64()),
        "run_id": pa.array([run_id] * n, pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1]),
    }
    if thumbnails is not None:
        cols["thumbnail"] = pa.array([thumbnails[i] for i in rows], pa.binary())
    return pa.table(cols)
