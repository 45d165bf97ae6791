"""The pattern library: patterns, strategies and performance history on embedded LanceDB.

Writes are idempotent upserts (``merge_insert`` on a deterministic key), made in
transactions of ``write_batch_rows`` rows. Lance commits a new table version per
transaction and only a committed manifest is ever read, so a writer that dies mid-write
leaves the table at its last committed version; re-running the write completes it
without duplicates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import lancedb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from aio.errors import AioError, DataError
from aio.store.config import LanceDBStoreConfig, memory_rows, resolve_path
from aio.store.exact import Snapshot
from aio.store.rowcache import RowCache
from aio.store.filters import PatternFilter, where_clause
from aio.store.records import (
    PERFORMANCE_SCHEMA,
    STRATEGY_SCHEMA,
    VECTOR,
    PatternRecord,
    PerformanceRecord,
    StrategyRecord,
    pattern_schema,
    patterns_to_arrow,
    performance_to_arrow,
    strategies_to_arrow,
    strategy_from_row,
)
from aio.store.stats import OutcomeStats, outcome_stats

log = structlog.get_logger(__name__)

PATTERNS = "patterns"
STRATEGIES = "strategies"
PERFORMANCE = "performance"
FILTER_TIME_COLUMNS = ("ts_init", "label_end_ts")
FILTER_CHOICE_COLUMNS = ("symbol", "timeframe", "regime", "model_id")
# Columns a search returns unless asked otherwise (the vector and PNG are bulky).
NEIGHBOR_COLUMNS = [
    "pattern_id", "model_id", "symbol", "timeframe", "ts_init", "label_end_ts", "horizon_bars",
    "regime", "fwd_return", "label", "mfe", "mae", "run_id",
]


@dataclass
class WriteResult:
    table: str
    rows_in: int
    inserted: int
    updated: int
    transactions: int
    version: int


@dataclass
class IndexStatus:
    action: str  # "none" | "built" | "rebuilt"
    rows: int
    indexed_rows: int
    index_type: str | None
    seconds: float
    reason: str = ""


@dataclass
class SearchResult:
    """k nearest patterns (closest first, ``_distance`` column) and their outcome statistics."""

    neighbors: pl.DataFrame
    stats: OutcomeStats


class PatternLibrary:
    """``PatternLibrary(path).add_patterns(...)``, ``.search(...)``, ``.ensure_index()``."""

    def __init__(self, path: str | Path, config: LanceDBStoreConfig | None = None) -> None:
        self.path = Path(path)
        self.cfg = config or LanceDBStoreConfig()
        self.path.mkdir(parents=True, exist_ok=True)
        self._db = lancedb.connect(str(self.path))
        self._tables: dict[str, Any] = {}
        self._dim: int | None = None
        self._state: tuple[bool, int] | None = None  # (has ANN index, rows) of the read version
        self._snap: Snapshot | None = None
        self._rows: RowCache | None = None

    @classmethod
    def from_config(cls, cfg: LanceDBStoreConfig, run_dir: str | Path | None = None) -> "PatternLibrary":
        return cls(resolve_path(cfg, run_dir), cfg)

    def __repr__(self) -> str:
        return f"PatternLibrary({str(self.path)!r})"

    # -- tables -----------------------------------------------------------------------
    def _table(self, name: str, schema: pa.Schema | None = None) -> Any | None:
        """Open ``name``; create it empty with ``schema`` when given and absent."""
        tbl = self._tables.get(name)
        if tbl is not None:
            return tbl
        if name in self._db:
            tbl = self._db.open_table(name)
        elif schema is not None:
            tbl = self._db.create_table(name, schema=schema, exist_ok=True)
        else:
            return None
        self._tables[name] = tbl
        return tbl

    def table(self, name: str) -> Any:
        """The raw LanceDB table (``patterns``, ``strategies`` or ``performance``)."""
        tbl = self._table(name)
        if tbl is None:
            raise AioError(f"the pattern library at {self.path} has no {name!r} table yet; write to it first")
        return tbl

    @property
    def dim(self) -> int | None:
        """Embedding width of the patterns table (fixed when the table is created)."""
        if self._dim is None:
            tbl = self._table(PATTERNS)
            self._dim = None if tbl is None else tbl.schema.field(VECTOR).type.list_size
        return self._dim

    def count_patterns(self, filters: PatternFilter | Mapping[str, Any] | None = None) -> int:
        tbl = self._table(PATTERNS)
        if tbl is None:
            return 0
        return tbl.count_rows(where_clause(PatternFilter.coerce(filters)))

    def versions(self, name: str = PATTERNS) -> list[dict[str, Any]]:
        return self.table(name).list_versions()

    # -- writes -----------------------------------------------------------------------
    def _upsert(self, name: str, data: pa.Table, key: str, schema: pa.Schema, update: bool) -> tuple[int, int, int]:
        tbl = self._table(name, schema)
        if data.num_rows == 0:
            return 0, 0, tbl.version
        data = _last_per_key(data, key)
        builder = tbl.merge_insert(key)
        if update:
            builder = builder.when_matched_update_all()
        res = builder.when_not_matched_insert_all().execute(data)
        if name == PATTERNS:
            self._invalidate()
        return int(res.num_inserted_rows), int(res.num_updated_rows), int(res.version)

    def add_patterns(self, data: Any, *, progress: bool = False) -> WriteResult:
        """Upsert patterns keyed by (model_id, symbol, timeframe, ts_init).

        ``data``: a list of :class:`PatternRecord` (or dicts), a pyarrow Table /
        RecordBatch, a polars DataFrame, a RecordBatchReader, or an iterator of those
        (a batched write). Each ``write_batch_rows`` slice is one transaction.
        """
        inserted = updated = tx = rows = 0
        version = 0
        update = self.cfg.on_conflict == "update"
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(desc="patterns", unit="row")
        for part in _parts(data):
            table = patterns_to_arrow(part, self.dim)
            schema = pattern_schema(table.schema.field(VECTOR).type.list_size)
            for start in range(0, table.num_rows, self.cfg.write_batch_rows):
                chunk = table.slice(start, self.cfg.write_batch_rows)
                i, u, version = self._upsert(PATTERNS, chunk, "pattern_id", schema, update)
                inserted, updated, tx, rows = inserted + i, updated + u, tx + 1, rows + chunk.num_rows
                if bar is not None:
                    bar.update(chunk.num_rows)
        if bar is not None:
            bar.close()
        log.info("patterns written", path=str(self.path), rows=rows, inserted=inserted, updated=updated,
                 transactions=tx, version=version)
        return WriteResult(PATTERNS, rows, inserted, updated, tx, version)

    def add_strategy(self, records: StrategyRecord | Iterable[StrategyRecord]) -> list[str]:
        """Upsert strategies (id = hash of name, definition, params); returns their ids."""
        recs = [records] if isinstance(records, StrategyRecord) else list(records)
        self._upsert(STRATEGIES, strategies_to_arrow(recs), "strategy_id", STRATEGY_SCHEMA, update=True)
        return [r.strategy_id for r in recs]

    def add_performance(self, records: PerformanceRecord | Iterable[PerformanceRecord]) -> WriteResult:
        """Upsert performance rows keyed by (run_id, strategy_id, fold, segment)."""
        recs = [records] if isinstance(records, PerformanceRecord) else list(records)
        i, u, v = self._upsert(PERFORMANCE, performance_to_arrow(recs), "perf_id", PERFORMANCE_SCHEMA, update=True)
        return WriteResult(PERFORMANCE, len(recs), i, u, 1, v)

    # -- reads ------------------------------------------------------------------------
    def strategies(self) -> pl.DataFrame:
        tbl = self._table(STRATEGIES)
        if tbl is None:
            return pl.from_arrow(STRATEGY_SCHEMA.empty_table())
        return pl.from_arrow(tbl.to_arrow()).sort("name", "strategy_id")

    def get_strategy(self, strategy_id: str) -> StrategyRecord:
        tbl = self._table(STRATEGIES)
        rows = [] if tbl is None else tbl.search().where(f"strategy_id = '{_sql(strategy_id)}'").to_list()
        if not rows:
            raise AioError(f"no strategy {strategy_id!r} in the pattern library at {self.path}")
        return strategy_from_row(rows[0])

    def performance(self, strategy_id: str | None = None, run_id: str | None = None) -> pl.DataFrame:
        tbl = self._table(PERFORMANCE)
        if tbl is None:
            return pl.from_arrow(PERFORMANCE_SCHEMA.empty_table())
        conds = [f"{c} = '{_sql(v)}'" for c, v in (("strategy_id", strategy_id), ("run_id", run_id)) if v]
        q = tbl.search()
        if conds:
            q = q.where(" AND ".join(conds))
        return pl.from_arrow(q.limit(None).to_arrow()).sort("run_id", "strategy_id", "fold", "segment")

    def thumbnail(self, pattern_id: str) -> bytes | None:
        rows = self.table(PATTERNS).search().where(f"pattern_id = '{_sql(pattern_id)}'").select(["thumbnail"]).to_list()
        return rows[0]["thumbnail"] if rows else None

    # -- similarity search ----------------------------------------------------------------
    def _engine(self, tbl: Any, exact: bool) -> str:
        """"ann" (LanceDB index), "memory" (numpy snapshot) or "flat" (LanceDB scan)."""
        if self._state is None:
            self._state = (self._vector_index(tbl) is not None, tbl.count_rows())
        indexed, rows = self._state
        if indexed and not exact:
            return "ann"
        return "memory" if rows <= memory_rows(self.cfg, self.dim or 1) else "flat"

    def _snapshot_of(self, tbl: Any) -> Snapshot:
        if self._snap is None:
            cols = list(dict.fromkeys(NEIGHBOR_COLUMNS + [VECTOR]))
            data = tbl.search().select(cols).limit(None).to_arrow()
            self._snap = Snapshot.from_arrow(data, tbl.version, VECTOR)
            log.debug("pattern snapshot loaded", rows=data.num_rows, version=tbl.version)
        return self._snap

    def _row_cache(self, tbl: Any) -> RowCache:
        if self._rows is None:
            t0 = time.perf_counter()
            data = tbl.search().select(NEIGHBOR_COLUMNS).with_row_id(True).limit(None).to_arrow()
            self._rows = RowCache.from_arrow(data, tbl.version)
            log.debug("row cache loaded", rows=data.num_rows, seconds=round(time.perf_counter() - t0, 2))
        return self._rows

    def _invalidate(self) -> None:
        self._state = None
        self._snap = None
        self._rows = None

    def refresh(self) -> None:
        """See writes made by other processes (a library reads one version until then)."""
        for tbl in self._tables.values():
            tbl.checkout_latest()
        self._invalidate()

    def search(
        self,
        embedding: Sequence[float] | np.ndarray,
        k: int = 10,
        filters: PatternFilter | Mapping[str, Any] | None = None,
        ts_before: int | None = None,
        *,
        exact: bool = False,
        nprobes: int | None = None,
        refine_factor: int | None = None,
        ef: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> SearchResult:
        """The k patterns nearest ``embedding`` that pass ``filters``, and their outcomes.

        ``ts_before``: the query bar's ``ts_init``; only patterns whose label horizon
        closed strictly before it (``label_end_ts < ts_before``) are candidates, so a
        backtest never sees an outcome from its own future. Filters are applied before
        the vector search (prefilter), so k rows come back whenever k rows pass.
        ``exact`` ignores the ANN index (brute force over the filtered rows).
        """
        return self.search_many(
            np.asarray(embedding, dtype=np.float32).reshape(1, -1), k, filters,
            None if ts_before is None else [ts_before], exact=exact, nprobes=nprobes,
            refine_factor=refine_factor, ef=ef, columns=columns,
        )[0]

    def search_many(
        self,
        embeddings: np.ndarray,
        k: int = 10,
        filters: PatternFilter | Mapping[str, Any] | None = None,
        ts_before: Sequence[int | None] | np.ndarray | None = None,
        *,
        exact: bool = False,
        nprobes: int | None = None,
        refine_factor: int | None = None,
        ef: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> list[SearchResult]:
        """:meth:`search` for each row of ``embeddings``, ``ts_before[i]`` per query.

        Without an ANN index and with vectors that fit ``memory_mb``, all queries are answered
        exactly from an in-memory snapshot, one matrix product per block of queries.
        """
        q = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        tsb: list[int | None] = [None] * len(q) if ts_before is None else [
            None if t is None else int(t) for t in ts_before
        ]
        if len(tsb) != len(q):
            raise AioError(f"ts_before has {len(tsb)} values for {len(q)} query embeddings")
        cols = [c for c in (columns or NEIGHBOR_COLUMNS) if c != "_distance"]
        tbl = self._table(PATTERNS)
        if tbl is None:
            empty = pl.from_arrow(pattern_schema(1).empty_table()).select(cols)
            empty = empty.with_columns(pl.lit(None, pl.Float32).alias("_distance"))
            return [SearchResult(empty, outcome_stats([], [])) for _ in q]
        if q.shape[1] != self.dim:
            raise DataError(f"query embedding has {q.shape[1]} values; the library stores {self.dim}")
        flt = PatternFilter.coerce(filters)
        engine = self._engine(tbl, exact)
        if engine == "memory" and set(cols) <= set(NEIGHBOR_COLUMNS):
            hits = self._snapshot_of(tbl).search(q, k, self.cfg.metric, flt, tsb)
            return [_result(h.select(cols + ["_distance"])) for h in hits]
        cache = None
        if engine == "ann" and self.cfg.search.cache_rows and set(cols) <= set(NEIGHBOR_COLUMNS):
            cache = self._row_cache(tbl)
        out = []
        for vec, tb in zip(q, tsb):
            where = where_clause(flt, tb)
            if cache is not None:
                hits = self._lance_search(tbl, vec, k, where, True, nprobes, refine_factor, ef, None)
                rows = cache.lookup(hits["_rowid"].to_numpy(), cols)
                if rows is not None:
                    out.append(_result(rows.with_columns(hits["_distance"])))
                    continue
                log.warning("row cache missed; fetching columns from LanceDB", path=str(self.path))
                self._rows = cache = None
            out.append(_result(self._lance_search(tbl, vec, k, where, engine == "ann", nprobes, refine_factor, ef, cols)))
        return out

    def _lance_search(self, tbl, vec, k, where, use_index, nprobes, refine_factor, ef, cols) -> pl.DataFrame:
        """One LanceDB vector query; ``cols=None`` returns only ``_rowid`` and ``_distance``."""
        sp = self.cfg.search
        q = tbl.search(vec, vector_column_name=VECTOR).distance_type(self.cfg.metric).limit(k)
        q = q.select(["_distance"]).with_row_id(True) if cols is None else q.select(cols + ["_distance"])
        if where:
            q = q.where(where, prefilter=True)
        if not use_index:
            return pl.from_arrow(q.bypass_vector_index().to_arrow())
        rf = sp.refine_factor if refine_factor is None else refine_factor  # 0: no re-ranking
        if rf:
            q = q.refine_factor(rf)
        ef = ef or sp.ef
        if ef:
            q = q.ef(ef)
        probes = nprobes or sp.nprobes
        hits = q.nprobes(probes).to_arrow()
        if where and hits.num_rows < k:
            # A narrow filter can leave fewer than k rows in the probed lists: widen.
            # (Not up front: an open-ended probe count costs 3-4x on every query.)
            hits = q.minimum_nprobes(probes).maximum_nprobes(sp.max_nprobes).to_arrow()
        return pl.from_arrow(hits)

    # -- ANN index --------------------------------------------------------------------
    def _vector_index(self, tbl: Any) -> Any | None:
        for idx in tbl.list_indices():
            if VECTOR in idx.columns:
                return idx
        return None

    def index_status(self) -> IndexStatus:
        tbl = self._table(PATTERNS)
        if tbl is None:
            return IndexStatus("none", 0, 0, None, 0.0, "no patterns")
        n = tbl.count_rows()
        idx = self._vector_index(tbl)
        if idx is None:
            return IndexStatus("none", n, 0, None, 0.0, "no index")
        st = tbl.index_stats(idx.name)
        return IndexStatus("none", n, int(st.num_indexed_rows), str(st.index_type), 0.0)

    def ensure_index(self, *, force: bool = False) -> IndexStatus:
        """Build the ANN index once the table holds ``ann_threshold`` rows; retrain it as it grows.

        Below the threshold searches are exact (in numpy). Rows added after the index was trained
        are searched exactly next to it (LanceDB scans unindexed fragments) until they
        exceed ``index.reindex_fraction`` of the indexed rows; then the table is compacted
        and the index retrained. LanceDB's incremental ``optimize`` is not used for the
        index: on lancedb 0.40 it lost IVF-PQ recall (1.0 -> 0.4 on a 3.5k-row test table).
        """
        t0 = time.perf_counter()
        tbl = self._table(PATTERNS)
        if tbl is None:
            return IndexStatus("none", 0, 0, None, 0.0, "no patterns")
        n = tbl.count_rows()
        idx = self._vector_index(tbl)
        # Build at ann_threshold rows, or earlier once the vectors outgrow the memory engine.
        threshold = min(self.cfg.ann_threshold, max(memory_rows(self.cfg, self.dim or 1), 1))
        if idx is None and n < threshold and not force:
            return IndexStatus("none", n, 0, None, 0.0, f"{n} rows < {threshold}: exact search, no index yet")
        if idx is not None and not force:
            st = tbl.index_stats(idx.name)
            indexed, fresh = int(st.num_indexed_rows), int(st.num_unindexed_rows)
            if fresh <= self.cfg.index.reindex_fraction * indexed:
                reason = "index current" if fresh == 0 else f"{fresh} new rows searched exactly until retraining"
                return IndexStatus("none", n, indexed, str(st.index_type), 0.0, reason)
        action = "built" if idx is None else "rebuilt"
        config = self._index_config(n)
        log.info("building ann index", rows=n, config=repr(config))
        # One fragment per write transaction slows every result fetch; compact first
        # (this also touches an old index, which is replaced right after).
        tbl.optimize()
        tbl.create_index(VECTOR, config=config, replace=True)
        if self.cfg.index.scalar_indexes:
            self._scalar_indexes(tbl)
        self._invalidate()
        idx = self._vector_index(tbl)
        st = tbl.index_stats(idx.name)
        secs = time.perf_counter() - t0
        log.info("ann index " + action, rows=n, seconds=round(secs, 2), index_type=st.index_type)
        return IndexStatus(action, n, int(st.num_indexed_rows), str(st.index_type), secs)

    def _scalar_indexes(self, tbl: Any) -> None:
        """Indexes on the filter columns: a prefilter then reads an index, not the columns.

        On 1M rows a narrow filter (symbol + regime + ts_before) went from ~50 ms to
        ~8 ms per query; building them takes about a second.
        """
        from lancedb.index import Bitmap, BTree

        for column in FILTER_TIME_COLUMNS:
            tbl.create_index(column, config=BTree(), replace=True)
        for column in FILTER_CHOICE_COLUMNS:
            tbl.create_index(column, config=Bitmap(), replace=True)

    def _index_config(self, n: int) -> Any:
        from lancedb.index import HnswPq, HnswSq, IvfFlat, IvfPq, IvfSq

        ip = self.cfg.index
        dim = self.dim or 0
        common = dict(distance_type=self.cfg.metric, max_iterations=ip.max_iterations, sample_rate=ip.sample_rate)
        if ip.type.startswith("IVF_HNSW"):
            hnsw = dict(common, num_partitions=ip.num_partitions, m=ip.m, ef_construction=ip.ef_construction)
            if ip.type == "IVF_HNSW_SQ":
                return HnswSq(**hnsw)
            return HnswPq(**hnsw, num_sub_vectors=_sub_vectors(dim, ip.num_sub_vectors), num_bits=ip.num_bits)
        parts = ip.num_partitions or max(1, round(n / ip.target_partition_size))
        if ip.type == "IVF_PQ":
            return IvfPq(**common, num_partitions=parts, num_sub_vectors=_sub_vectors(dim, ip.num_sub_vectors),
                         num_bits=ip.num_bits)
        if ip.type == "IVF_SQ":
            return IvfSq(**common, num_partitions=parts)
        return IvfFlat(**common, num_partitions=parts)


# -- helpers ------------------------------------------------------------------------------


def open_library(cfg: LanceDBStoreConfig | None = None, run_dir: str | Path | None = None) -> PatternLibrary:
    """Store plugin entry: the library ``cfg`` points at."""
    return PatternLibrary.from_config(cfg or LanceDBStoreConfig(), run_dir)


def _sub_vectors(dim: int, wanted: int | None) -> int:
    """PQ sub-vectors: ``wanted`` (or dim / 2); must divide dim, so take the nearest divisor."""
    target = wanted or max(1, dim // 2)
    divisors = [d for d in range(1, dim + 1) if dim % d == 0]
    return min(divisors, key=lambda d: (abs(d - target), -d))


def _sql(text: str) -> str:
    return str(text).replace("'", "''")


def _np(frame: pl.DataFrame, name: str) -> np.ndarray | None:
    if name not in frame.columns:
        return None
    return frame[name].cast(pl.Float64).fill_null(float("nan")).to_numpy()


def _result(hits: pl.DataFrame) -> SearchResult:
    if "fwd_return" not in hits.columns or "label" not in hits.columns:
        return SearchResult(hits, outcome_stats([], []) if hits.is_empty() else _no_stats(len(hits)))
    stats = outcome_stats(
        _np(hits, "fwd_return"), hits["label"].to_numpy(), _np(hits, "_distance"), _np(hits, "mfe"), _np(hits, "mae")
    )
    return SearchResult(hits, stats)


def _no_stats(n: int) -> OutcomeStats:
    nan = float("nan")
    return OutcomeStats(n, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan)


def _last_per_key(table: pa.Table, key: str) -> pa.Table:
    """Keep the last row of each key: a merge must not see the same key twice."""
    keys = table.column(key)
    if pc.count_distinct(keys).as_py() == table.num_rows:
        return table
    idx = np.arange(table.num_rows)
    order = pl.DataFrame({"k": keys.combine_chunks(), "i": idx}).group_by("k").agg(pl.col("i").max())["i"]
    return table.take(pa.array(np.sort(order.to_numpy())))


def _parts(data: Any) -> Iterator[Any]:
    """Split a write into the inputs of :func:`patterns_to_arrow`."""
    if isinstance(data, (pa.Table, pa.RecordBatch)) or type(data).__module__.startswith("polars"):
        yield data
    elif isinstance(data, pa.RecordBatchReader):
        yield from data
    elif isinstance(data, (list, tuple)):
        if data and not isinstance(data[0], (PatternRecord, Mapping)):
            for part in data:  # a list of tables = a batched write
                yield part
        else:
            yield data
    elif hasattr(data, "__iter__"):
        for part in data:
            if isinstance(part, (PatternRecord, Mapping)):
                raise DataError("an iterator of single records is ambiguous; pass a list of PatternRecord")
            yield part
    else:
        raise DataError(f"cannot write patterns from {type(data).__name__}; pass records, an Arrow table or polars")
