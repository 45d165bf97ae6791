"""The dataset on disk: ``<root>/<hash>/`` holding ``meta.json`` and the rows.

Rows live in a Lance table (``rows.lance``, random access by row number, read with
lancedb) or a Parquet file (``rows.parquet``, row groups of ``ROW_GROUP`` rows). A
dataset is written under a temporary name and renamed into place when complete, so a
folder named by its hash is always whole; ``meta.json`` says what it holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import OrderedDict
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FORMAT_VERSION = 2
ROW_GROUP = 256
META = "meta.json"
TABLE = "rows"


def _update_array(h: "hashlib._Hash", name: str, a: np.ndarray) -> None:
    a = np.asarray(a)
    h.update(f"{name}|{a.dtype.kind}|{a.shape}|".encode())
    if a.dtype.kind == "f":
        # float32 precision (~1e-7 relative, below one price point): the last bits of a
        # float64 can differ run to run (parallel sums, e.g. polars group sums of tick
        # volume), which must not defeat the cache. NaN/inf positions are hashed exactly.
        with np.errstate(over="ignore", invalid="ignore"):
            a = np.ascontiguousarray(a, dtype=np.float32)
        a = np.where(np.isnan(a), np.float32(np.nan), a)  # one NaN bit pattern
    h.update(np.ascontiguousarray(a).tobytes())


def input_hash(bars_frame, bars_meta: dict[str, Any], indicators: dict[str, np.ndarray], config: dict[str, Any]) -> str:
    """sha256 of the bars, the indicator arrays and the (output-relevant) config."""
    h = hashlib.sha256()
    h.update(f"aio-dataset-v{FORMAT_VERSION}|".encode())
    h.update(json.dumps(bars_meta, sort_keys=True, default=str).encode())
    for col in bars_frame.columns:
        _update_array(h, f"bar.{col}", bars_frame.get_column(col).to_numpy())
    for name in sorted(indicators):
        _update_array(h, f"ind.{name}", np.asarray(indicators[name]))
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    return h.hexdigest()


def plain(obj: Any) -> Any:
    return asdict(obj) if is_dataclass(obj) else obj


def read_meta(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(path) / META).read_text())
    except (OSError, ValueError):
        return None


class RowWriter:
    """Appends Arrow record batches to a Lance table or a Parquet file."""

    def __init__(self, folder: Path, fmt: str) -> None:
        self.folder, self.fmt = folder, fmt
        self._pq: pq.ParquetWriter | None = None
        self._lance = None

    def write(self, table: pa.Table) -> None:
        if self.fmt == "parquet":
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.folder / f"{TABLE}.parquet", table.schema, compression="zstd")
            self._pq.write_table(table, row_group_size=ROW_GROUP)
        else:
            import lancedb

            if self._lance is None:
                db = lancedb.connect(str(self.folder))
                self._lance = db.create_table(TABLE, data=table, mode="overwrite")
            else:
                self._lance.add(table)

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()
            self._pq = None
        self._lance = None


def finalize(tmp: Path, final: Path, meta: dict[str, Any]) -> None:
    (tmp / META).write_text(json.dumps(meta, indent=1, default=str))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


class RowReader:
    """Random access to stored rows by row number; opened lazily, once per process."""

    def __init__(self, folder: Path, fmt: str, cache_groups: int = 8) -> None:
        self.folder, self.fmt = Path(folder), fmt
        self._pid: int | None = None
        self._handle: Any = None
        self._groups: OrderedDict[tuple[int, tuple[str, ...]], pa.Table] = OrderedDict()
        self._cache_groups = cache_groups
        self._starts: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers get a fresh handle: native handles do not survive fork/pickle.
        return {"folder": self.folder, "fmt": self.fmt, "_pid": None, "_handle": None,
                "_groups": OrderedDict(), "_cache_groups": self._cache_groups, "_starts": None}

    def _open(self) -> Any:
        if self._handle is None or self._pid != os.getpid():
            if self.fmt == "parquet":
                self._handle = pq.ParquetFile(self.folder / f"{TABLE}.parquet")
            else:
                import lancedb

                self._handle = lancedb.connect(str(self.folder)).open_table(TABLE)
            self._pid = os.getpid()
            self._groups.clear()
            self._starts = None
        return self._handle

    def columns(self, columns: Iterable[str]) -> pa.Table:
        """Whole columns in row order (the light ones: features, labels, times)."""
        cols = list(dict.fromkeys(["row", *columns]))
        handle = self._open()
        if self.fmt == "parquet":
            table = handle.read(columns=cols)
        else:
            table = handle.search().select(cols).limit(None).to_arrow()
        return table.sort_by("row")

    def take(self, rows: Iterable[int], columns: Iterable[str]) -> pa.Table:
        """Rows ``rows`` (row numbers), in the order given."""
        rows = np.asarray(list(rows), dtype=np.int64)
        cols = list(dict.fromkeys(["row", *columns]))
        handle = self._open()
        if self.fmt != "parquet":
            uniq = np.unique(rows)
            # take_offsets answers in storage order, whatever order it was asked in.
            got = handle.take_offsets(uniq.tolist()).select(cols).to_arrow().sort_by("row")
            if not np.array_equal(got.column("row").to_numpy(), uniq):
                raise RuntimeError(f"store {self.folder} returned rows other than those asked for")
            return got.take(pa.array(np.searchsorted(uniq, rows)))
        if self._starts is None:
            md = handle.metadata
            self._starts = np.cumsum([0] + [md.row_group(i).num_rows for i in range(md.num_row_groups)])
        groups = np.searchsorted(self._starts, rows, side="right") - 1
        pieces = []
        for r, g in zip(rows.tolist(), groups.tolist()):
            pieces.append(self._group(g, tuple(cols)).slice(r - int(self._starts[g]), 1))
        return pa.concat_tables(pieces) if pieces else pa.table({c: [] for c in cols})

    def _group(self, g: int, cols: tuple[str, ...]) -> pa.Table:
        key = (g, cols)
        hit = self._groups.get(key)
        if hit is None:
            hit = self._open().read_row_group(g, columns=list(cols))
            self._groups[key] = hit
            if len(self._groups) > self._cache_groups:
                self._groups.popitem(last=False)
        else:
            self._groups.move_to_end(key)
        return hit
