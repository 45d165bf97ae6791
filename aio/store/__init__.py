"""Pattern library on embedded LanceDB: store plugin ``lancedb``.

    from aio.store import PatternLibrary, PatternRecord
    lib = PatternLibrary("~/.cache/aio/patterns.lancedb")
    lib.add_patterns(records)          # idempotent upsert
    lib.ensure_index()                 # ANN index once the table is large
    res = lib.search(vec, k=20, filters={"symbol": "EURUSD"}, ts_before=bar_ts_init)
    res.neighbors, res.stats.p_up

See docs/pattern_library.md.
"""

from __future__ import annotations

from aio.store.config import IndexParams, LanceDBStoreConfig, SearchParams, resolve_path
from aio.store.filters import PatternFilter, where_clause
from aio.store.ids import model_id_from_weights, pattern_key
from aio.store.library import IndexStatus, PatternLibrary, SearchResult, WriteResult, open_library
from aio.store.records import PatternRecord, PerformanceRecord, StrategyRecord, pattern_schema
from aio.store.stats import OutcomeStats, outcome_stats
from aio.store.thumbnail import png_thumbnail

__all__ = [
    "IndexParams", "IndexStatus", "LanceDBStoreConfig", "OutcomeStats", "PatternFilter", "PatternLibrary",
    "PatternRecord", "PerformanceRecord", "SearchParams", "SearchResult", "StrategyRecord", "WriteResult",
    "model_id_from_weights", "open_library", "outcome_stats", "pattern_key", "pattern_schema",
    "png_thumbnail", "resolve_path", "where_clause",
]


def register(registry) -> None:
    registry.add(
        "store", "lancedb", open_library, config=LanceDBStoreConfig,
        description="pattern library on embedded LanceDB (patterns, strategies, performance)",
    )
