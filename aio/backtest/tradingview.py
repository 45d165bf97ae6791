"""TradingView exports: the chart's OHLCV csv and the strategy tester's "List of trades".

Used by the parity tests (ours and the strategy layer's) to prove the simulator
against TradingView itself.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from aio.backtest.result import BacktestResult


def _parse_times(col: pl.Series) -> pl.Series:
    # "2022-01-02T17:00:00-05:00" or "...-0500": offset-aware local times -> UTC ns
    return col.str.to_datetime(time_zone="UTC").dt.cast_time_unit("ns").dt.epoch("ns")


def load_tv_ohlcv(path: str | Path, bar_seconds: int | None = None) -> pl.DataFrame:
    """A TradingView chart export (time = bar OPEN time with offset) as a BAR_SCHEMA frame."""
    raw = pl.read_csv(path)
    ts = _parse_times(raw.get_column("time"))
    if bar_seconds is None:
        bar_seconds = int(ts.diff().drop_nulls().mode().min() // 1_000_000_000)
    vol = raw.get_column("Volume") if "Volume" in raw.columns else pl.Series([0.0] * raw.height)
    return pl.DataFrame({
        "ts_event": ts,
        "ts_init": ts + bar_seconds * 1_000_000_000,
        "open": raw.get_column("open").cast(pl.Float64),
        "high": raw.get_column("high").cast(pl.Float64),
        "low": raw.get_column("low").cast(pl.Float64),
        "close": raw.get_column("close").cast(pl.Float64),
        "volume": vol.cast(pl.Float64),
        "ticks": pl.Series([0] * raw.height, dtype=pl.Int64),
        "spread_mean": pl.Series([None] * raw.height, dtype=pl.Float64),
    })


def load_tv_trades(path: str | Path) -> pl.DataFrame:
    """TradingView's "List of trades" (two rows a trade) as one row a trade."""
    raw = pl.read_csv(path)
    raw = raw.with_columns(_parse_times(raw.get_column("Date/Time")).alias("ts"))
    entries = raw.filter(pl.col("Type").str.starts_with("Entry"))
    exits = raw.filter(pl.col("Type").str.starts_with("Exit"))
    e = entries.select(
        pl.col("Trade #").alias("id"),
        pl.col("Type").str.replace("Entry ", "").alias("side"),
        pl.col("ts").alias("entry_time"),
        pl.col("Price USD").alias("entry_price"),
        pl.col("Signal").alias("entry_signal"),
        pl.col("Position size (qty)").cast(pl.Float64).alias("qty"),
    )
    x = exits.select(
        pl.col("Trade #").alias("id"),
        pl.col("ts").alias("exit_time"),
        pl.col("Price USD").alias("exit_price"),
        pl.col("Signal").alias("exit_signal"),
        pl.col("Net P&L USD").alias("pnl"),
    )
    return e.join(x, on="id", how="left").sort("id")


def compare_trades(result: BacktestResult, tv: pl.DataFrame, tick: float = 1e-5) -> list[str]:
    """Differences between our trades and TradingView's, one line each (empty: identical)."""
    ours = result.trades.with_columns(
        pl.col("entry_time").dt.epoch("ns"), pl.col("exit_time").dt.epoch("ns")
    )
    problems: list[str] = []
    if ours.height != tv.height:
        problems.append(f"trade count: ours {ours.height}, TradingView {tv.height}")
    for i, (a, b) in enumerate(zip(ours.iter_rows(named=True), tv.iter_rows(named=True))):
        diffs = []
        for key in ("side", "entry_time", "exit_time", "entry_signal", "exit_signal"):
            if a[key] != b[key]:
                diffs.append(f"{key} {a[key]!r} vs {b[key]!r}")
        for key in ("entry_price", "exit_price"):
            if abs(a[key] - b[key]) > tick / 2:
                diffs.append(f"{key} {a[key]!r} vs {b[key]!r}")
        if abs(a["qty"] - b["qty"]) > 1e-9:
            diffs.append(f"qty {a['qty']} vs {b['qty']}")
        if diffs:
            problems.append(f"trade {i + 1}: " + "; ".join(diffs))
    return problems
