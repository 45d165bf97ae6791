"""What a backtest returns, and its files (trades.csv, equity.parquet)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from aio.backtest import engine as E
from aio.backtest.config import BacktestConfig

TRADE_COLUMNS = [
    "id", "side", "entry_time", "entry_price", "exit_time", "exit_price", "qty", "pnl", "pnl_quote",
    "entry_signal", "exit_signal", "commission", "entry_bar", "exit_bar",
]


SIGNAL_CODES = ("Open", "Margin call", "Ruin")  # trade-row signal codes -3, -4, -5 (-1, -2: the exit id)


def signal_names(order_ids: list[str], exit_id: str) -> list[str]:
    """Names by trade-row signal code: code k >= 0 is order slot k, code -j is entry ``K - 1 + j``."""
    return list(order_ids) + [exit_id, exit_id, *SIGNAL_CODES]


def signal_name(order_ids: list[str], exit_id: str, code: float) -> str:
    c = int(code)
    return order_ids[c] if c >= 0 else signal_names(order_ids, exit_id)[len(order_ids) - 1 - c]


@dataclass
class BacktestResult:
    """Raw arrays from the compiled loop; tables are built on first access.

    An optimiser only needs ``equity`` and ``trade_pnl``, so it never pays for the
    polars tables.
    """

    raw_trades: np.ndarray  # (n_trades, engine.T_NCOL)
    equity_values: np.ndarray  # equity at each bar close
    position_values: np.ndarray  # signed units held at each bar close
    ts_event: np.ndarray  # bar open times, int64 ns UTC
    order_ids: list[str]
    exit_id: str
    config: BacktestConfig
    size_steps: dict[str, np.ndarray] = field(default_factory=dict)
    ruin_bar: int | None = None  # the bar whose close found equity <= 0; nothing traded after it
    margin_calls: int = 0
    commission_total: float = 0.0  # every commission the broker charged (account currency)
    rates: tuple[np.ndarray, np.ndarray] | None = None  # quote -> account at each open / close; None: 1
    close: np.ndarray | None = None  # the bars' closes (for the invariant checks)

    @property
    def n_trades(self) -> int:
        return int(self.raw_trades.shape[0])

    @property
    def trade_pnl(self) -> np.ndarray:
        return self.raw_trades[:, E.T_PNL]

    @property
    def net_profit(self) -> float:
        return float(self.equity_values[-1] - self.config.initial_capital) if len(self.equity_values) else 0.0

    @cached_property
    def trades(self) -> pl.DataFrame:
        """One row per trade, in the order trades closed (TradingView's "List of trades")."""
        r = self.raw_trades
        ebar = r[:, E.T_EBAR].astype(np.int64)
        xbar = r[:, E.T_XBAR].astype(np.int64)
        # names are gathered in polars from small lookup series: a Python loop over
        # thousands of trades would cost more than the simulation
        names = pl.Series(signal_names(self.order_ids, self.exit_id), dtype=pl.String)
        k = len(self.order_ids)

        def name_col(codes: np.ndarray) -> pl.Series:
            c = codes.astype(np.int64)
            idx = np.where(c >= 0, c, k - 1 - c)  # -1 -> k, -2 -> k+1, ... -5 -> k+4
            return names.gather(idx.astype(np.uint32))

        cols: dict[str, object] = {
            "id": np.arange(1, r.shape[0] + 1, dtype=np.int64),
            "side": pl.Series(["short", "long"]).gather((r[:, E.T_SIDE] > 0).astype(np.uint32)),
            "entry_time": self.ts_event[ebar],
            "entry_price": r[:, E.T_EPX],
            "exit_time": self.ts_event[xbar],
            "exit_price": r[:, E.T_XPX],
            "qty": r[:, E.T_QTY],
            "pnl": r[:, E.T_PNL],
            "pnl_quote": r[:, E.T_PNLQ],
            "entry_signal": name_col(r[:, E.T_ESIG]),
            "exit_signal": name_col(r[:, E.T_XSIG]),
            "commission": r[:, E.T_COMM],
            "entry_bar": ebar,
            "exit_bar": xbar,
        }
        dec = r[:, E.T_DEC].astype(np.int64)
        for name, arr in self.size_steps.items():
            cols[f"size_{name}"] = np.asarray(arr, dtype=np.float64)[dec]
        df = pl.DataFrame(cols)
        return df.with_columns(
            pl.col("entry_time").cast(pl.Datetime("ns", "UTC")),
            pl.col("exit_time").cast(pl.Datetime("ns", "UTC")),
        )

    @cached_property
    def equity(self) -> pl.DataFrame:
        """Per bar: equity at the close, signed position, drawdown (abs and fraction of the peak)."""
        from aio.backtest.metrics import drawdown_series

        eq = self.equity_values
        dd, dd_pct = drawdown_series(eq, self.config.initial_capital)
        return pl.DataFrame({
            "ts_event": self.ts_event,
            "equity": eq,
            "position": self.position_values,
            "drawdown": dd,
            "drawdown_pct": dd_pct,
        })


def write_trades_csv(result: BacktestResult, path: str | Path, synthetic: bool = False) -> Path:
    """trades.csv with ISO-8601 UTC times (the fill bars' open times, as TradingView lists them),
    P&L in account currency (``pnl``) and quote currency (``pnl_quote``), and a ``synthetic`` column."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df = result.trades.with_columns(
        pl.col("entry_time").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        pl.col("exit_time").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        pl.lit(str(bool(synthetic)).lower()).alias("synthetic"),
    )
    df.write_csv(path)
    return path


def write_equity_parquet(result: BacktestResult, bars_frame: pl.DataFrame, path: str | Path,
                         synthetic: bool = False) -> Path:
    """equity.parquet keyed by ``ts_init`` (bar close: the moment each value is known)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    eq = result.equity
    if bars_frame.height != eq.height:
        raise ValueError(
            f"bars frame has {bars_frame.height} rows but the backtest ran on {eq.height}: pass the same bars"
        )
    if "ts_init" in bars_frame.columns:
        ts_init = bars_frame.get_column("ts_init")
    else:
        raise ValueError("bars frame lacks ts_init (bar close time); build bars with aio.records.BAR_SCHEMA")
    out = eq.drop("ts_event").insert_column(0, ts_init.alias("ts_init"))
    out.write_parquet(path)
    from aio.labels import label_parquet

    label_parquet(path, bool(synthetic))
    return path
