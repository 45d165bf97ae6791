"""Decoded catalog: Hive-partitioned Parquet, one immutable file per complete UTC day.

    {catalog_dir}/symbol=EURUSD/date=2019-02-04/part-0.parquet

Columns ``ts_event`` (int64 ns UTC), ``bid``, ``ask`` (scaled prices), ``bid_volume``,
``ask_volume`` (as in the file), sorted by ``ts_event``. A day file is written once
all 24 hours of the day are settled (ticks or known empty), atomically; a day without
ticks (a Saturday) is a zero-row file, so a re-run knows it is done. Scan it lazily::

    pl.scan_parquet("CATALOG/symbol=EURUSD/**/*.parquet", hive_partitioning=True)
"""

from __future__ import annotations

import os
import uuid
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from aio.records import TICK_SCHEMA

PART = "part-0.parquet"


def empty_ticks() -> pl.DataFrame:
    return pl.DataFrame(schema=TICK_SCHEMA)


def frame_from_columns(columns: list[dict[str, np.ndarray]]) -> pl.DataFrame:
    """One tick frame from per-hour column dicts (already in time order)."""
    if not columns:
        return empty_ticks()
    data = {name: np.concatenate([c[name] for c in columns]) for name in TICK_SCHEMA}
    return pl.DataFrame(data, schema=TICK_SCHEMA)


class Catalog:
    def __init__(self, root: Path, symbol: str):
        self.root = Path(root)
        self.symbol = symbol

    @property
    def symbol_dir(self) -> Path:
        return self.root / f"symbol={self.symbol}"

    def day_path(self, day: date) -> Path:
        return self.symbol_dir / f"date={day.isoformat()}" / PART

    def has(self, day: date) -> bool:
        return self.day_path(day).is_file()

    def write(self, day: date, frame: pl.DataFrame) -> Path:
        path = self.day_path(day)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{PART}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            frame.select(list(TICK_SCHEMA)).cast(TICK_SCHEMA).write_parquet(tmp, compression="zstd", statistics=True)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    def scan(self, days: list[date]) -> pl.LazyFrame:
        """Lazy frame over the given (existing) day files, tick columns only."""
        files = [str(self.day_path(d)) for d in days]
        if not files:
            return empty_ticks().lazy()
        return pl.scan_parquet(files, hive_partitioning=False).select(list(TICK_SCHEMA))

    def scan_all(self) -> pl.LazyFrame:
        """Every day of the symbol, with the Hive columns ``symbol`` and ``date``."""
        return pl.scan_parquet(str(self.symbol_dir / "**" / "*.parquet"), hive_partitioning=True)
