"""The pattern library: patterns, strategies and performance history on embedded LanceDB.

Writes are idempotent upserts (``merge_insert`` on a deterministic key), made in
transactions of ``write_batch_rows`` rows. Lance commits a new table version per
transaction and only a committed manifest is ever read, so a writer that dies mid-write
leaves the table at its last committed version; re-running the write completes it
without duplicates. Processes writing the same library at once are serialised per table
(:mod:`aio.store.tables`), so racing writers never duplicate a key either.

Each embedding space has its own patterns table, named from the embedding width and a
hash of the model id (``patterns_64d_<hash>``): a library that holds 64-wide chartnet
embeddings takes 32-wide price-path embeddings next to them, and a query only ever
searches the table of its own model and width.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from aio.errors import AioError, DataError
from aio.store.config import LanceDBStoreConfig, memory_rows, resolve_path
from aio.store.exact import Snapshot
from aio.store.ids import short_hash
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
from aio.store.tables import LockedDB

log = structlog.get_logger(__name__)

PATTERNS = "patterns"  # the legacy single table; now the prefix of the per-model tables
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
class _ReadState:
    """What a patterns table's searches cache for the version they read."""

    state: tuple[bool, int] | None = None  # (has ANN index, rows)
    snap: Snapshot | None = None
    rows: RowCache | None = None


def pattern_table_name(model_id: str, dim: int) -> str:
    """The table of one embedding space: width and model (hashed: ids may hold any character)."""
    return f"{PATTERNS}_{int(dim)}d_{short_hash('model', str(model_id), n=12)}"


def _dim_of(name: str) -> int:
    return int(name[len(PATTERNS) + 1:].split("d_", 1)[0])


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
        self._db = LockedDB(self.path)
        self._read: dict[str, _ReadState] = {}
        self._written: list[str] = []  # pattern tables this library wrote, last last
        self._migrated = False

    @classmethod
    def from_config(cls, cfg: LanceDBStoreConfig, run_dir: str | Path | None = None) -> "PatternLibrary":
        return cls(resolve_path(cfg, run_dir), cfg)

    def __repr__(self) -> str:
        return f"PatternLibrary({str(self.path)!r})"

    # -- tables -----------------------------------------------------------------------
    def _table(self, name: str, schema: pa.Schema | None = None) -> Any | None:
        """Open ``name``; create it empty with ``schema`` when given and absent."""
        return self._db.create(name, schema) if schema is not None else self._db.open(name)

    def pattern_tables(self, dim: int | None = None) -> list[str]:
        """Names of the patterns tables (of width ``dim``), one per model and width."""
        self._migrate_legacy()
        names = [n for n in self._db.names() if n.startswith(PATTERNS + "_")]
        return [n for n in names if dim is None or _dim_of(n) == dim]

    def _model_tables(self, model_ids: Sequence[str], dim: int | None) -> list[str]:
        hashes = {short_hash("model", str(m), n=12) for m in model_ids}
        return [n for n in self.pattern_tables(dim) if n.rsplit("_", 1)[1] in hashes]

    def _route(self, flt: PatternFilter, dim: int | None) -> list[str]:
        """The patterns tables a filter can match (all of width ``dim`` without a model filter)."""
        if flt.model_id is None:
            return self.pattern_tables(dim)
        models = [flt.model_id] if isinstance(flt.model_id, str) else list(flt.model_id)
        return self._model_tables(models, dim)

    def _default_pattern_table(self) -> str | None:
        """The patterns table meant when none is named: the one last written, or the only one."""
        if self._written:
            return self._written[-1]
        names = self.pattern_tables()
        if len(names) > 1:
            raise AioError(
                f"the pattern library at {self.path} holds {len(names)} embedding tables ({', '.join(names)}); "
                "name the model (model_id=...)"
            )
        return names[0] if names else None

    def _model_of(self, name: str) -> str | None:
        rows = self._db.open(name).search().select(["model_id"]).limit(1).to_list()
        return rows[0]["model_id"] if rows else None

    def _migrate_legacy(self) -> None:
        """Move a one-table library (``patterns``, before per-model tables) into per-model tables.

        Idempotent upserts then a drop: a migration killed half-way is redone by the next open.
        """
        if self._migrated:
            return
        self._migrated = True
        if PATTERNS not in self._db.names():
            return
        with self._db.lock(PATTERNS):
            old = self._db.open(PATTERNS) if PATTERNS in self._db.names(fresh=True) else None
            if old is None:
                return
            old.checkout_latest()
            data = patterns_to_arrow(old.to_arrow().drop_columns(["pattern_id"]))
            log.warning("moving the single patterns table into one table per model", path=str(self.path),
                        rows=data.num_rows)
            width = data.schema.field(VECTOR).type.list_size
            for model, rows in _by_model(data) if data.num_rows else ():
                for start in range(0, rows.num_rows, self.cfg.write_batch_rows):
                    # update=False: a row written since (to the new table) is newer than the old one
                    self.upsert(pattern_table_name(model, width), rows.slice(start, self.cfg.write_batch_rows),
                                "pattern_id", pattern_schema(width), update=False)
            self._db.drop(PATTERNS)

    def table(self, name: str) -> Any:
        """The raw LanceDB table: ``strategies``, ``performance``, a patterns table by name, or
        ``patterns`` for the patterns table last written (or the only one)."""
        if name == PATTERNS:
            name = self._default_pattern_table() or PATTERNS
        tbl = self._table(name)
        if tbl is None:
            raise AioError(f"the pattern library at {self.path} has no {name!r} table yet; write to it first")
        return tbl

    @property
    def dim(self) -> int | None:
        """Embedding width of the patterns (None when empty or when models of several widths are stored)."""
        dims = {_dim_of(n) for n in self.pattern_tables()}
        return dims.pop() if len(dims) == 1 else None

    def models(self) -> dict[str, str]:
        """model_id -> patterns table, for every model with patterns in the library."""
        out = {}
        for name in self.pattern_tables():
            model = self._model_of(name)
            if model is not None:
                out[model] = name
        return out

    def count_patterns(self, filters: PatternFilter | Mapping[str, Any] | None = None) -> int:
        flt = PatternFilter.coerce(filters)
        where = where_clause(flt)
        return sum(self._db.open(n).count_rows(where) for n in self._route(flt, None))

    def versions(self, name: str = PATTERNS) -> list[dict[str, Any]]:
        return self.table(name).list_versions()

    # -- writes -----------------------------------------------------------------------
    def upsert(self, name: str, data: pa.Table, key: str, schema: pa.Schema, update: bool = True) -> tuple[int, int, int]:
        """Merge rows into table ``name`` on the deterministic ``key`` (one transaction).

        Safe with any number of processes writing at once: one row per key, always.
        Returns (inserted, updated, version).
        """
        data = _last_per_key(data, key) if data.num_rows else data
        out = self._db.upsert(name, data, key, schema, update)
        if name in self._read:
            del self._read[name]
        return out

    def add_patterns(self, data: Any, *, progress: bool = False) -> WriteResult:
        """Upsert patterns keyed by (model_id, symbol, timeframe, ts_init).

        ``data``: a list of :class:`PatternRecord` (or dicts), a pyarrow Table /
        RecordBatch, a polars DataFrame, a RecordBatchReader, or an iterator of those
        (a batched write). Each ``write_batch_rows`` slice is one transaction.
        """
        self._migrate_legacy()
        inserted = updated = tx = rows = 0
        version = 0
        update = self.cfg.on_conflict == "update"
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(desc="patterns", unit="row")
        name = PATTERNS
        for part in _parts(data):
            table = patterns_to_arrow(part)
            width = table.schema.field(VECTOR).type.list_size
            schema = pattern_schema(width)
            for model, rows_of_model in _by_model(table):
                name = pattern_table_name(model, width)
                for start in range(0, rows_of_model.num_rows, self.cfg.write_batch_rows):
                    chunk = rows_of_model.slice(start, self.cfg.write_batch_rows)
                    i, u, version = self.upsert(name, chunk, "pattern_id", schema, update)
                    inserted, updated, tx, rows = inserted + i, updated + u, tx + 1, rows + chunk.num_rows
                    if bar is not None:
                        bar.update(chunk.num_rows)
                if name in self._written:
                    self._written.remove(name)
                self._written.append(name)
        if bar is not None:
            bar.close()
        log.info("patterns written", path=str(self.path), table=name, rows=rows, inserted=inserted, updated=updated,
                 transactions=tx, version=version)
        return WriteResult(name, rows, inserted, updated, tx, version)

    def add_strategy(self, records: StrategyRecord | Iterable[StrategyRecord]) -> list[str]:
        """Upsert strategies (id = hash of name, definition, params); returns their ids."""
        recs = [records] if isinstance(records, StrategyRecord) else list(records)
        self.upsert(STRATEGIES, strategies_to_arrow(recs), "strategy_id", STRATEGY_SCHEMA, update=True)
        return [r.strategy_id for r in recs]

    def add_performance(self, records: PerformanceRecord | Iterable[PerformanceRecord]) -> WriteResult:
        """Upsert performance rows keyed by (run_id, strategy_id, fold, segment)."""
        recs = [records] if isinstance(records, PerformanceRecord) else list(records)
        i, u, v = self.upsert(PERFORMANCE, performance_to_arrow(recs), "perf_id", PERFORMANCE_SCHEMA, update=True)
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
        model = str(pattern_id).rsplit("|", 3)[0]  # ids are model|symbol|timeframe|ts_init
        for name in self._model_tables([model], None):
            rows = self._db.open(name).search().where(f"pattern_id = '{_sql(pattern_id)}'").select(["thumbnail"]).to_list()
            if rows:
                return rows[0]["thumbnail"]
        return None

    # -- similarity search ----------------------------------------------------------------
    def _rs(self, name: str) -> _ReadState:
        return self._read.setdefault(name, _ReadState())

    def _engine(self, name: str, tbl: Any, exact: bool) -> str:
        """"ann" (LanceDB index), "memory" (numpy snapshot) or "flat" (LanceDB scan)."""
        rs = self._rs(name)
        if rs.state is None:
            rs.state = (self._vector_index(tbl) is not None, tbl.count_rows())
        indexed, rows = rs.state
        if indexed and not exact:
            return "ann"
        return "memory" if rows <= memory_rows(self.cfg, _dim_of(name)) else "flat"

    def _snapshot_of(self, name: str, tbl: Any) -> Snapshot:
        rs = self._rs(name)
        if rs.snap is None:
            cols = list(dict.fromkeys(NEIGHBOR_COLUMNS + [VECTOR]))
            data = tbl.search().select(cols).limit(None).to_arrow()
            rs.snap = Snapshot.from_arrow(data, tbl.version, VECTOR)
            log.debug("pattern snapshot loaded", table=name, rows=data.num_rows, version=tbl.version)
        return rs.snap

    def _row_cache(self, name: str, tbl: Any) -> RowCache:
        rs = self._rs(name)
        if rs.rows is None:
            t0 = time.perf_counter()
            data = tbl.search().select(NEIGHBOR_COLUMNS).with_row_id(True).limit(None).to_arrow()
            rs.rows = RowCache.from_arrow(data, tbl.version)
            log.debug("row cache loaded", table=name, rows=data.num_rows, seconds=round(time.perf_counter() - t0, 2))
        return rs.rows

    def _invalidate(self) -> None:
        self._read.clear()

    @property
    def _snap(self) -> Snapshot | None:
        """The numpy snapshot of the default patterns table, if loaded (which engine answered)."""
        rs = self._read.get(self._default_pattern_table() or "")
        return None if rs is None else rs.snap

    @property
    def _rows(self) -> RowCache | None:
        rs = self._read.get(self._default_pattern_table() or "")
        return None if rs is None else rs.rows

    def refresh(self) -> None:
        """See writes made by other processes (a library reads one version until then)."""
        self._db.refresh()
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
        flt = PatternFilter.coerce(filters)
        names = self._route(flt, q.shape[1])
        if not names:
            other = self._route(flt, None)
            if other:
                raise DataError(
                    f"query embedding has {q.shape[1]} values; the patterns of "
                    f"{flt.model_id if flt.model_id is not None else 'this library'} have "
                    f"{sorted({_dim_of(n) for n in other})}: query with the model that wrote them"
                )
            empty = pl.from_arrow(pattern_schema(1).empty_table()).select(cols)
            empty = empty.with_columns(pl.lit(None, pl.Float32).alias("_distance"))
            return [SearchResult(empty, outcome_stats([], [])) for _ in q]
        if len(names) > 1:
            models = sorted(str(self._model_of(n)) for n in names)
            raise DataError(
                f"the pattern library at {self.path} holds {q.shape[1]}-wide embeddings of {len(names)} models "
                f"({', '.join(models)}); their distances do not compare: filter on one model_id"
            )
        name = names[0]
        tbl = self._db.open(name)
        engine = self._engine(name, tbl, exact)
        if engine == "memory" and set(cols) <= set(NEIGHBOR_COLUMNS):
            hits = self._snapshot_of(name, tbl).search(q, k, self.cfg.metric, flt, tsb)
            return [_result(h.select(cols + ["_distance"])) for h in hits]
        cache = None
        if engine == "ann" and self.cfg.search.cache_rows and set(cols) <= set(NEIGHBOR_COLUMNS):
            cache = self._row_cache(name, tbl)
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
                self._rs(name).rows = cache = None
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

    def _index_targets(self, model_id: str | None) -> list[str]:
        if model_id is not None:
            return self._model_tables([model_id], None)
        return list(self._written) or self.pattern_tables()

    def index_status(self, model_id: str | None = None) -> IndexStatus:
        """ANN index of the patterns table of ``model_id`` (default: the one last written, or the only one)."""
        name = self._index_targets(model_id)[-1:] if model_id is not None else [self._default_pattern_table()]
        tbl = self._db.open(name[0]) if name and name[0] else None
        if tbl is None:
            return IndexStatus("none", 0, 0, None, 0.0, "no patterns")
        n = tbl.count_rows()
        idx = self._vector_index(tbl)
        if idx is None:
            return IndexStatus("none", n, 0, None, 0.0, "no index")
        st = tbl.index_stats(idx.name)
        return IndexStatus("none", n, int(st.num_indexed_rows), str(st.index_type), 0.0)

    def ensure_index(self, model_id: str | None = None, *, force: bool = False) -> IndexStatus:
        """Build the ANN index once a patterns table holds ``ann_threshold`` rows; retrain it as it grows.

        Applies to the table of ``model_id``, or to the tables this library wrote (all when
        it wrote none). Below the threshold searches are exact (in numpy). Rows added after
        the index was trained are searched exactly next to it (LanceDB scans unindexed
        fragments) until they exceed ``index.reindex_fraction`` of the indexed rows; then the
        table is compacted and the index retrained. LanceDB's incremental ``optimize`` is not
        used for the index: on lancedb 0.40 it lost IVF-PQ recall (1.0 -> 0.4 on a 3.5k-row
        test table).
        """
        out = [self._ensure_one(name, force) for name in self._index_targets(model_id)]
        if not out:
            return IndexStatus("none", 0, 0, None, 0.0, "no patterns")
        if len(out) == 1:
            return out[0]
        acted = [s for s in out if s.action != "none"]
        return IndexStatus(
            "rebuilt" if any(s.action == "rebuilt" for s in acted) else "built" if acted else "none",
            sum(s.rows for s in out), sum(s.indexed_rows for s in out),
            ",".join(sorted({s.index_type for s in out if s.index_type})) or None,
            sum(s.seconds for s in out), "; ".join(s.reason for s in out if s.reason),
        )

    def _ensure_one(self, name: str, force: bool) -> IndexStatus:
        t0 = time.perf_counter()
        tbl = self._db.open(name)
        dim = _dim_of(name)
        n = tbl.count_rows()
        idx = self._vector_index(tbl)
        # Build at ann_threshold rows, or earlier once the vectors outgrow the memory engine.
        threshold = min(self.cfg.ann_threshold, max(memory_rows(self.cfg, dim), 1))
        if idx is None and n < threshold and not force:
            return IndexStatus("none", n, 0, None, 0.0, f"{n} rows < {threshold}: exact search, no index yet")
        if idx is not None and not force:
            st = tbl.index_stats(idx.name)
            indexed, fresh = int(st.num_indexed_rows), int(st.num_unindexed_rows)
            if fresh <= self.cfg.index.reindex_fraction * indexed:
                reason = "index current" if fresh == 0 else f"{fresh} new rows searched exactly until retraining"
                return IndexStatus("none", n, indexed, str(st.index_type), 0.0, reason)
        action = "built" if idx is None else "rebuilt"
        with self._db.lock(name):  # compaction and index commits must not race other writers
            tbl.checkout_latest()
            n = tbl.count_rows()
            config = self._index_config(n, dim)
            log.info("building ann index", table=name, rows=n, config=repr(config))
            # One fragment per write transaction slows every result fetch; compact first
            # (this also touches an old index, which is replaced right after).
            tbl.optimize()
            tbl.create_index(VECTOR, config=config, replace=True)
            if self.cfg.index.scalar_indexes:
                self._scalar_indexes(tbl)
        self._read.pop(name, None)
        idx = self._vector_index(tbl)
        st = tbl.index_stats(idx.name)
        secs = time.perf_counter() - t0
        log.info("ann index " + action, table=name, rows=n, seconds=round(secs, 2), index_type=st.index_type)
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

    def _index_config(self, n: int, dim: int) -> Any:
        from lancedb.index import HnswPq, HnswSq, IvfFlat, IvfPq, IvfSq

        ip = self.cfg.index
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


def _by_model(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """The rows of each model_id, in order of first appearance."""
    models = table.column("model_id")
    uniq = pc.unique(models).to_pylist()
    if len(uniq) == 1:
        yield uniq[0], table
        return
    for m in uniq:
        yield m, table.filter(pc.equal(models, m))


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
