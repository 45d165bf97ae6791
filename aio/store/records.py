"""Rows of the pattern library: typed dataclasses and their Arrow schemas.

Three tables:

* ``patterns``    one embedding per (model_id, symbol, timeframe, ts_init) with what
                  price did next (the label outcomes) and a small PNG thumbnail.
* ``strategies``  a strategy definition + parameters + its latest metrics.
* ``performance`` one row per run, strategy, fold and segment (in/out of sample).

Times are int64 ns UTC. ``ts_init`` is the close of the pattern's last bar (the
first moment the pattern is known); ``label_end_ts`` is the close of the last bar of
the label horizon, i.e. the first moment its outcome is known. A query at bar t may
only use patterns with ``label_end_ts < t.ts_init`` (see ``PatternLibrary.search``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aio.errors import DataError
from aio.store.ids import performance_key, strategy_key

VECTOR = "vector"

# Columns of the patterns table except the vector (whose width is the embedding size).
PATTERN_FIELDS: list[pa.Field] = [
    pa.field("pattern_id", pa.string(), nullable=False),
    pa.field("model_id", pa.string(), nullable=False),
    pa.field("symbol", pa.string(), nullable=False),
    pa.field("timeframe", pa.string(), nullable=False),
    pa.field("ts_init", pa.int64(), nullable=False),
    pa.field("label_end_ts", pa.int64(), nullable=False),
    pa.field("horizon_bars", pa.int32(), nullable=False),
    pa.field("regime", pa.string()),
    pa.field("fwd_return", pa.float64(), nullable=False),
    pa.field("label", pa.int8(), nullable=False),
    pa.field("mfe", pa.float64()),
    pa.field("mae", pa.float64()),
    pa.field("run_id", pa.string()),
    pa.field("thumbnail", pa.binary()),
]
PATTERN_KEY_COLUMNS = ("model_id", "symbol", "timeframe", "ts_init")
REQUIRED_PATTERN_COLUMNS = [f.name for f in PATTERN_FIELDS if not f.nullable and f.name != "pattern_id"]


def pattern_schema(dim: int) -> pa.Schema:
    return pa.schema(PATTERN_FIELDS + [pa.field(VECTOR, pa.list_(pa.float32(), dim), nullable=False)])


@dataclass
class PatternRecord:
    """One pattern: the embedding of the window ending at ``ts_init`` and its outcome.

    ``label``: +1 up, 0 flat, -1 down over ``horizon_bars`` bars; ``fwd_return`` the
    simple return close[t+h] / close[t] - 1; ``mfe`` / ``mae`` the max favourable /
    adverse excursion over the horizon (optional).
    """

    embedding: Sequence[float] | np.ndarray
    model_id: str
    symbol: str
    timeframe: str
    ts_init: int
    label_end_ts: int
    fwd_return: float
    label: int
    horizon_bars: int
    regime: str | None = None
    mfe: float | None = None
    mae: float | None = None
    run_id: str | None = None
    thumbnail: bytes | None = None


STRATEGY_SCHEMA = pa.schema(
    [
        pa.field("strategy_id", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("kind", pa.string()),
        pa.field("symbol", pa.string()),
        pa.field("timeframe", pa.string()),
        pa.field("model_id", pa.string()),
        pa.field("definition_json", pa.string(), nullable=False),
        pa.field("params_json", pa.string(), nullable=False),
        pa.field("metrics_json", pa.string()),
        pa.field("updated_ts", pa.int64(), nullable=False),
    ]
)


@dataclass
class StrategyRecord:
    """A strategy as written by the optimiser: definition (spec mapping or text) + params."""

    name: str
    definition: Any
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    kind: str | None = "rules"
    symbol: str | None = None
    timeframe: str | None = None
    model_id: str | None = None

    @property
    def strategy_id(self) -> str:
        """Same name, definition and params -> same id (metrics do not count)."""
        return strategy_key(self.name, self.definition, self.params)


PERFORMANCE_SCHEMA = pa.schema(
    [
        pa.field("perf_id", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("strategy_id", pa.string(), nullable=False),
        pa.field("fold", pa.int32(), nullable=False),
        pa.field("segment", pa.string(), nullable=False),
        pa.field("symbol", pa.string()),
        pa.field("timeframe", pa.string()),
        pa.field("model_id", pa.string()),
        pa.field("start_ts", pa.int64()),
        pa.field("end_ts", pa.int64()),
        pa.field("sharpe", pa.float64()),
        pa.field("total_return", pa.float64()),
        pa.field("max_drawdown", pa.float64()),
        pa.field("n_trades", pa.int64()),
        pa.field("win_rate", pa.float64()),
        pa.field("profit_factor", pa.float64()),
        pa.field("metrics_json", pa.string()),
        pa.field("synthetic", pa.bool_()),
        pa.field("recorded_ts", pa.int64(), nullable=False),
    ]
)


@dataclass
class PerformanceRecord:
    """Metrics of one strategy on one fold of one run (``segment``: "train"/"test"/...)."""

    run_id: str
    strategy_id: str
    fold: int = 0
    segment: str = "test"
    symbol: str | None = None
    timeframe: str | None = None
    model_id: str | None = None
    start_ts: int | None = None
    end_ts: int | None = None
    sharpe: float | None = None
    total_return: float | None = None
    max_drawdown: float | None = None
    n_trades: int | None = None
    win_rate: float | None = None
    profit_factor: float | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    synthetic: bool | None = None

    @property
    def perf_id(self) -> str:
        return performance_key(self.run_id, self.strategy_id, self.fold, self.segment)


# -- conversions ----------------------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def strategies_to_arrow(records: Iterable[StrategyRecord]) -> pa.Table:
    now = time.time_ns()
    rows = [
        {
            "strategy_id": r.strategy_id,
            "name": r.name,
            "kind": r.kind,
            "symbol": r.symbol,
            "timeframe": r.timeframe,
            "model_id": r.model_id,
            "definition_json": _json(r.definition),
            "params_json": _json(dict(r.params)),
            "metrics_json": _json(dict(r.metrics)),
            "updated_ts": now,
        }
        for r in records
    ]
    return pa.Table.from_pylist(rows, schema=STRATEGY_SCHEMA)


def strategy_from_row(row: Mapping[str, Any]) -> StrategyRecord:
    return StrategyRecord(
        name=row["name"],
        definition=json.loads(row["definition_json"]),
        params=json.loads(row["params_json"]),
        metrics=json.loads(row["metrics_json"] or "{}"),
        kind=row["kind"],
        symbol=row["symbol"],
        timeframe=row["timeframe"],
        model_id=row["model_id"],
    )


def performance_to_arrow(records: Iterable[PerformanceRecord]) -> pa.Table:
    now = time.time_ns()
    rows = []
    for r in records:
        d = asdict(r)
        d["metrics_json"] = _json(dict(d.pop("metrics")))
        d["perf_id"] = r.perf_id
        d["recorded_ts"] = now
        rows.append(d)
    return pa.Table.from_pylist(rows, schema=PERFORMANCE_SCHEMA)


def _records_to_columns(records: Sequence[PatternRecord]) -> tuple[dict[str, list], np.ndarray]:
    cols: dict[str, list] = {f.name: [] for f in PATTERN_FIELDS if f.name != "pattern_id"}
    vectors = []
    for r in records:
        for name in cols:
            cols[name].append(getattr(r, name))
        vectors.append(np.asarray(r.embedding, dtype=np.float32))
    try:
        mat = np.stack(vectors) if vectors else np.zeros((0, 0), np.float32)
    except ValueError as exc:
        raise DataError(f"pattern embeddings differ in length: {exc}; use one model per batch") from exc
    return cols, mat


def _vector_column(col: pa.ChunkedArray | pa.Array, dim: int | None) -> tuple[pa.Array, int]:
    """The embedding column as fixed_size_list<float32>[dim]."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_fixed_size_list(col.type):
        width = col.type.list_size
        values = col.flatten()
    elif pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
        width = int(lengths[0]) if len(lengths) else (dim or 0)
        if len(lengths) and (lengths != width).any():
            bad = int(np.flatnonzero(lengths != width)[0])
            raise DataError(f"pattern embedding at row {bad} has {lengths[bad]} values, expected {width}")
        values = col.flatten()
    else:
        raise DataError(f"embedding column must be a list of floats, got {col.type}")
    if dim is not None and width != dim:
        raise DataError(
            f"embeddings have {width} values but the patterns table stores {dim}; "
            "write another model's embeddings to another library path"
        )
    values = values.cast(pa.float32())
    arr = pa.FixedSizeListArray.from_arrays(values, width)
    return arr, width


def patterns_to_arrow(data: Any, dim: int | None = None) -> pa.Table:
    """Normalise records / an Arrow table / a polars frame into the patterns schema.

    The embedding may be called ``vector`` or ``embedding``. ``pattern_id`` is always
    (re)computed from the key columns, so the same pattern maps to the same row.
    """
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if hasattr(data, "to_arrow") and not isinstance(data, pa.Table):  # polars DataFrame
        data = data.to_arrow()
    if isinstance(data, pa.Table):
        names = data.column_names
        vec_name = VECTOR if VECTOR in names else "embedding" if "embedding" in names else None
        if vec_name is None:
            raise DataError(f"pattern table needs a 'vector' (or 'embedding') column; it has {names}")
        missing = [c for c in REQUIRED_PATTERN_COLUMNS if c not in names]
        if missing:
            raise DataError(f"pattern table lacks required columns {missing}")
        vectors, width = _vector_column(data.column(vec_name), dim)
        n = data.num_rows
        arrays = {}
        for f in PATTERN_FIELDS:
            if f.name == "pattern_id":
                continue
            if f.name in names:
                arrays[f.name] = data.column(f.name).cast(f.type)
            else:
                arrays[f.name] = pa.nulls(n, f.type)
    else:
        records = list(data)
        if records and not isinstance(records[0], PatternRecord):
            records = [PatternRecord(**r) if isinstance(r, Mapping) else r for r in records]
        cols, mat = _records_to_columns(records)
        width = mat.shape[1] if mat.size else (dim or 0)
        if dim is not None and records and width != dim:
            raise DataError(
                f"embeddings have {width} values but the patterns table stores {dim}; "
                "write another model's embeddings to another library path"
            )
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(mat.reshape(-1), pa.float32()), width)
        arrays = {
            f.name: pa.array(cols[f.name], f.type) for f in PATTERN_FIELDS if f.name != "pattern_id"
        }
    arrays = {k: (v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v) for k, v in arrays.items()}
    _validate(arrays, vectors)
    ts_txt = pc.cast(arrays["ts_init"], pa.string())
    pid = pc.binary_join_element_wise(arrays["model_id"], arrays["symbol"], arrays["timeframe"], ts_txt, "|")
    out = {"pattern_id": pid, **arrays, VECTOR: vectors}
    return pa.Table.from_pydict(out, schema=pattern_schema(width))


def _validate(arrays: Mapping[str, pa.Array], vectors: pa.Array) -> None:
    for name in REQUIRED_PATTERN_COLUMNS:
        nulls = arrays[name].null_count
        if nulls:
            raise DataError(f"pattern column {name!r} has {nulls} missing values; it is required")
    flat = vectors.flatten()
    if len(flat) and not pc.all(pc.is_finite(flat)).as_py():
        width = vectors.type.list_size
        bad = int(np.flatnonzero(~np.isfinite(flat.to_numpy()))[0]) // max(width, 1)
        raise DataError(f"pattern embedding at row {bad} has NaN/inf values; drop or fix that row")
    labels = arrays["label"].to_numpy(zero_copy_only=False)
    if len(labels) and not np.isin(labels, (-1, 0, 1)).all():
        bad = int(np.flatnonzero(~np.isin(labels, (-1, 0, 1)))[0])
        raise DataError(f"pattern label at row {bad} is {labels[bad]}; labels are -1 (down), 0 (flat), 1 (up)")
    ts = arrays["ts_init"].to_numpy(zero_copy_only=False)
    end = arrays["label_end_ts"].to_numpy(zero_copy_only=False)
    if len(ts) and (end <= ts).any():
        bad = int(np.flatnonzero(end <= ts)[0])
        raise DataError(
            f"pattern at row {bad}: label_end_ts {end[bad]} is not after ts_init {ts[bad]}; "
            "label_end_ts is the close of the last bar of the label horizon"
        )
