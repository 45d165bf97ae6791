"""The data model (after nautilus_trader): every time is int64 ns UTC.

Ticks:  ts_event, bid, ask, bid_volume, ask_volume
Bars:   ts_event (bar open), ts_init (bar close = the first moment the bar is known),
        open, high, low, close, volume, ticks, spread_mean
A decision at bar t may use rows with ts_init <= t.ts_init only; fills happen at t+1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

TICK_SCHEMA: dict[str, pl.DataType] = {
    "ts_event": pl.Int64,
    "bid": pl.Float64,
    "ask": pl.Float64,
    "bid_volume": pl.Float64,
    "ask_volume": pl.Float64,
}

BAR_SCHEMA: dict[str, pl.DataType] = {
    "ts_event": pl.Int64,
    "ts_init": pl.Int64,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,
    "ticks": pl.Int64,
    "spread_mean": pl.Float64,
}

NS_PER_SECOND = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_SECOND
NS_PER_HOUR = 60 * NS_PER_MINUTE


@dataclass
class MarketData:
    """What a data source hands to the pipeline: ticks or bars plus provenance.

    ``synthetic`` travels with the data into every output that used it.
    ``point`` is the instrument's price increment (EURUSD 1e-5, JPY pairs 1e-3);
    ``pip`` the conventional pip (1e-4 / 1e-2).
    """

    kind: Literal["ticks", "bars"]
    frame: pl.DataFrame
    symbol: str
    synthetic: bool = False
    point: float = 1e-5
    pip: float = 1e-4
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        schema = TICK_SCHEMA if self.kind == "ticks" else BAR_SCHEMA
        missing = [c for c in schema if c not in self.frame.columns]
        if missing:
            raise ValueError(f"{self.kind} frame from {self.source or 'source'} lacks columns {missing}")


def pip_size(symbol: str) -> float:
    """Conventional pip: 0.01 for JPY quotes, 0.0001 for other FX majors."""
    s = symbol.upper().replace("/", "")
    return 0.01 if s.endswith("JPY") else 1e-4


@dataclass
class Bars:
    """Bars with their provenance; ``frame`` follows :data:`BAR_SCHEMA`."""

    frame: pl.DataFrame
    symbol: str
    timeframe: str
    side: Literal["bid", "ask", "mid"] = "mid"
    synthetic: bool = False
    point: float = 1e-5
    pip: float = 1e-4
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.frame.height

    def col(self, name: str):
        return self.frame.get_column(name).to_numpy()
