"""Decoded catalog: Hive-partitioned Parquet, one immutable file per complete UTC day.

    {catalog_dir}/symbol=EURUSD/date=2019-02-04/part-0.parquet

Columns ``ts_event`` (int64 ns UTC), ``bid``, ``ask`` (scaled prices), ``bid_volume``,
``ask_volume`` (as in the file), sorted by ``ts_event``. A day file is written once
all 24 hours of the day are settled (ticks or known empty), atomically; a day without
ticks (a Saturday) is a zero-row file, so a re-run knows it is done. Scan it lazily::

    pl.scan_parquet("CATALOG/symbol=EURUSD/**/*.parquet", hive_partitioning=True)

Each day file has a record beside it, ``part-0.json``: its row count, byte size and
BLAKE2b checksum, written with it. A run that uses a day checks the file against its
record first (:meth:`Catalog.verify`); a truncated or corrupted file is
named in a warning, removed, and rebuilt from the raw cache (or fetched again), never
read as is. A file from before records is read whole once and recorded if it is sound.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from aio.records import TICK_SCHEMA

PART = "part-0.parquet"
RECORD = "part-0.json"
NO_RECORD = "it has no record (written by an aio without catalog records)"
NS_PER_DAY = 86_400 * 10**9


def empty_ticks() -> pl.DataFrame:
    return pl.DataFrame(schema=TICK_SCHEMA)


def frame_from_columns(columns: list[dict[str, np.ndarray]]) -> pl.DataFrame:
    """One tick frame from per-hour column dicts (already in time order)."""
    if not columns:
        return empty_ticks()
    data = {name: np.concatenate([c[name] for c in columns]) for name in TICK_SCHEMA}
    return pl.DataFrame(data, schema=TICK_SCHEMA)


def file_digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


class Catalog:
    def __init__(self, root: Path, symbol: str):
        self.root = Path(root)
        self.symbol = symbol

    @property
    def symbol_dir(self) -> Path:
        return self.root / f"symbol={self.symbol}"

    def day_path(self, day: date) -> Path:
        return self.symbol_dir / f"date={day.isoformat()}" / PART

    def record_path(self, day: date) -> Path:
        return self.day_path(day).with_name(RECORD)

    def has(self, day: date) -> bool:
        return self.day_path(day).is_file()

    def write(self, day: date, frame: pl.DataFrame) -> Path:
        """Day file and its record, each atomically, the record first: a reader then sees no
        day file yet, or one its record describes; a kill between the two leaves a record
        without a file (the day is built again)."""
        path = self.day_path(day)
        path.parent.mkdir(parents=True, exist_ok=True)
        tag = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
        tmp = path.with_name(f".{PART}.{tag}.tmp")
        rtmp = path.with_name(f".{RECORD}.{tag}.tmp")
        try:
            frame.select(list(TICK_SCHEMA)).cast(TICK_SCHEMA).write_parquet(tmp, compression="zstd", statistics=True)
            record = {"rows": frame.height, "bytes": tmp.stat().st_size, "blake2b": file_digest(tmp)}
            rtmp.write_text(json.dumps(record))
            os.replace(rtmp, self.record_path(day))
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            rtmp.unlink(missing_ok=True)
            raise
        return path

    def verify(self, day: date) -> str | None:
        """None when the day file matches its record (rows, size, checksum); else what is wrong."""
        path = self.day_path(day)
        try:
            record = json.loads(self.record_path(day).read_text())
            rows, size, digest = int(record["rows"]), int(record["bytes"]), str(record["blake2b"])
        except FileNotFoundError:
            return NO_RECORD
        except (ValueError, KeyError, TypeError) as exc:
            return f"its record {RECORD} is unreadable ({exc})"
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            return "the file is missing"
        if actual != size:
            return f"it has {actual} bytes, its record says {size} (truncated or overwritten)"
        if file_digest(path) != digest:
            return "its checksum differs from its record (corrupted)"
        try:
            n = pl.scan_parquet(path).select(pl.len()).collect().item()
        except (pl.exceptions.PolarsError, OSError) as exc:
            return f"it cannot be read ({type(exc).__name__}: {exc})"
        if n != rows:
            return f"it has {n} rows, its record says {rows}"
        return None

    def adopt(self, day: date) -> str | None:
        """Record a day file written before records existed, if it reads whole and holds
        sorted ticks of that day only (so old catalogs are not downloaded again); else why not."""
        path = self.day_path(day)
        try:
            frame = pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError) as exc:
            return f"it has no record and cannot be read ({type(exc).__name__}: {exc})"
        if dict(frame.schema) != dict(TICK_SCHEMA):
            return f"it has no record and its columns are {dict(frame.schema)}"
        ts = frame.get_column("ts_event")
        lo = (day - date(1970, 1, 1)).days * NS_PER_DAY
        if frame.height and (not ts.is_sorted() or ts.min() < lo or ts.max() >= lo + NS_PER_DAY):
            return "it has no record and its ticks are unsorted or outside the day"
        record = {"rows": frame.height, "bytes": path.stat().st_size, "blake2b": file_digest(path)}
        tmp = path.with_name(f".{RECORD}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.record_path(day))
        return None

    def drop(self, day: date) -> None:
        """Remove a day file (and its record) so it is built again."""
        self.day_path(day).unlink(missing_ok=True)
        self.record_path(day).unlink(missing_ok=True)

    def scan(self, days: list[date]) -> pl.LazyFrame:
        """Lazy frame over the given (existing) day files, tick columns only."""
        files = [str(self.day_path(d)) for d in days]
        if not files:
            return empty_ticks().lazy()
        return pl.scan_parquet(files, hive_partitioning=False).select(list(TICK_SCHEMA))

    def scan_all(self) -> pl.LazyFrame:
        """Every day of the symbol, with the Hive columns ``symbol`` and ``date``."""
        return pl.scan_parquet(str(self.symbol_dir / "**" / "*.parquet"), hive_partitioning=True)
