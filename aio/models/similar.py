"""``task=similar``: the nearest past patterns of one bar of an earlier run.

    python -m aio task=similar store.path=... query.run_dir=RUN query.ts=2024-03-12T14:00

The query bar is the run's last decision bar known at ``query.ts`` (``ts_init <= ts``);
its embedding comes from the run's ``embeddings.parquet`` (same model as the library
rows, matched by ``model_id``). Only patterns whose outcome was known before the query
bar (``label_end_ts < ts_init``) can be returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from aio.config import param
from aio.errors import ConfigError

EMBEDDINGS = "embeddings.parquet"


@dataclass
class QueryConfig:
    run_dir: str | None = param(None, help="a run folder holding embeddings.parquet (a model run)")
    ts: str | None = param(None, help="UTC time, e.g. 2024-03-12T14:00; the last decision bar known then is the query")
    k: int = param(10, ge=1, le=10000)
    same_symbol: bool = param(True, help="only patterns of the query's symbol and timeframe")
    allow_future: bool = param(False, help="also return patterns whose outcome came after the query bar (not for backtests)")
    exact: bool = param(False, help="brute-force search (skip the ANN index)")


def parse_ts(text: str) -> int:
    """ns since the epoch, UTC (naive times are UTC)."""
    import pandas as pd

    try:
        t = pd.Timestamp(text)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"config key query.ts={text!r} is not a time; write e.g. 2024-03-12T14:00") from exc
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return int(t.value)


def query_row(run_dir: Path, ts: int) -> dict[str, Any]:
    path = Path(run_dir) / EMBEDDINGS
    if not path.is_file():
        raise ConfigError(f"config key query.run_dir={run_dir}: no {EMBEDDINGS} there; point it at a run made with a model "
                          "(model=chartnet or knn_analogs)")
    df = pl.read_parquet(path).sort("ts_init")
    before = df.filter(pl.col("ts_init") <= ts)
    if before.height == 0:
        first = df["ts_init"][0] if df.height else None
        raise ConfigError(f"config key query.ts: no decision bar of {run_dir} is known at that time; the first closes at "
                          f"{pl.Series([first]).cast(pl.Datetime('ns', 'UTC'))[0] if first is not None else 'never'}")
    return before.row(before.height - 1, named=True)


def run_similar(query: QueryConfig, library: Any) -> dict[str, Any]:
    """Search ``library`` for the query bar's neighbours; returns the query, neighbours and stats."""
    if not query.run_dir or not query.ts:
        raise ConfigError("task=similar needs query.run_dir=<a model run folder> and query.ts=<UTC time>")
    row = query_row(Path(query.run_dir), parse_ts(query.ts))
    flt: dict[str, Any] = {"model_id": row["model_id"]}
    if query.same_symbol:
        flt.update(symbol=row["symbol"], timeframe=row["timeframe"])
    res = library.search(np.asarray(row["embedding"], dtype=np.float32), query.k, flt,
                         None if query.allow_future else int(row["ts_init"]), exact=query.exact)
    nb = res.neighbors.with_columns(
        pl.col("ts_init").cast(pl.Datetime("ns", "UTC")).alias("time"),
        pl.col("label_end_ts").cast(pl.Datetime("ns", "UTC")).alias("outcome_known"),
    )
    stats = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in res.stats.__dict__.items()}
    qinfo = {k: row[k] for k in ("ts_init", "bar_index", "symbol", "timeframe", "model_id")}
    qinfo["time"] = str(pl.Series([row["ts_init"]]).cast(pl.Datetime("ns", "UTC"))[0])
    return {"query": qinfo, "neighbors": nb, "stats": stats}
