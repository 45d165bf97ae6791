"""Racing writers and mixed embedding spaces in one pattern library.

Before the per-table write lock (aio/store/tables.py), 4 processes that wrote the same
300 patterns to a fresh path at one instant left 1,200 rows (Lance's optimistic commits let
every merge_insert append the keys it saw absent), or one died with "Table 'patterns' was
not found" while another was creating it.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import traceback
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from aio.errors import DataError  # noqa: E402
from aio.store import PatternLibrary, PerformanceRecord, StrategyRecord, pattern_schema  # noqa: E402
from aio.store.library import pattern_table_name  # noqa: E402

MIN = 60_000_000_000
WRITERS, ROUNDS, ROWS = 4, 10, 300


def patterns(n: int, dim: int, model_id: str, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    ts = np.arange(n, dtype=np.int64) * MIN
    return pa.table({
        "model_id": [model_id] * n, "symbol": ["EURUSD"] * n, "timeframe": ["1m"] * n, "ts_init": ts,
        "label_end_ts": ts + 5 * MIN, "horizon_bars": pa.array([5] * n, pa.int32()),
        "fwd_return": ts.astype(np.float64) / MIN * 1e-6, "label": pa.array(np.sign(rng.normal(size=n)).astype(np.int8)),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim),
    })


def strategies() -> list[StrategyRecord]:
    return [StrategyRecord(f"s{i}", {"entry": f"close > sma({i + 2})"}, {"n": i}, {"sharpe": i / 10}) for i in range(20)]


def performance() -> list[PerformanceRecord]:
    sid = strategies()[0].strategy_id
    return [PerformanceRecord(run_id="r1", strategy_id=sid, fold=f, segment=seg, sharpe=f / 10)
            for f in range(5) for seg in ("is", "oos")]


def _writer(paths: list[str], start, done, errors) -> None:
    """Waits for the start of each round with the others, then writes the same rows as they do."""
    try:
        # Two models of two widths: the library creates two patterns tables in the same instant.
        rows = pa.concat_tables([patterns(ROWS, 16, "chartnet-a"), patterns(ROWS, 16, "chartnet-b", seed=1)])
        narrow = patterns(ROWS // 3, 8, "price-path", seed=2)
        for path in paths:
            start.wait(timeout=120)
            lib = PatternLibrary(path)
            lib.add_patterns(rows)
            lib.add_strategy(strategies())
            lib.add_performance(performance())
            lib.add_patterns(narrow)
            done.wait(timeout=120)
    except BaseException:
        errors.put(traceback.format_exc())
        start.abort()
        done.abort()


@pytest.mark.slow
def test_racing_first_writes_never_duplicate(tmp_path: Path):
    ctx = mp.get_context("spawn")
    start, done, errors = ctx.Barrier(WRITERS), ctx.Barrier(WRITERS), ctx.Queue()
    paths = [str(tmp_path / f"round{r}") for r in range(ROUNDS)]
    procs = [ctx.Process(target=_writer, args=(paths, start, done, errors)) for _ in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    for p in procs:
        if p.is_alive():
            p.kill()
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert not problems, problems[0]
    assert [p.exitcode for p in procs] == [0] * WRITERS

    for path in paths:
        lib = PatternLibrary(path)
        tables = {
            pattern_table_name("chartnet-a", 16): ROWS, pattern_table_name("chartnet-b", 16): ROWS,
            pattern_table_name("price-path", 8): ROWS // 3, "strategies": 20, "performance": 10,
        }
        for name, n in tables.items():
            t = lib.table(name).to_arrow()
            key = t.column(t.column_names[0]).to_pylist()  # pattern_id / strategy_id / perf_id
            assert (t.num_rows, len(set(key))) == (n, n), f"{path} {name}: {t.num_rows} rows, {len(set(key))} keys"
        assert lib.count_patterns() == 2 * ROWS + ROWS // 3
        # every writer's 4 merges of the same rows: one insert, three no-op updates, one row each
        assert lib.strategies()["strategy_id"].n_unique() == 20


def test_two_widths_and_models_live_side_by_side(tmp_path: Path):
    lib = PatternLibrary(tmp_path / "lib")
    wide_a, wide_b, narrow = patterns(200, 64, "chartnet"), patterns(200, 64, "other", seed=5), patterns(150, 32, "knn")
    lib.add_patterns(wide_a)
    lib.add_patterns(narrow)  # a 32-wide model after a 64-wide one: no error, its own table
    lib.add_patterns(wide_b)
    assert sorted(lib.models()) == ["chartnet", "knn", "other"]
    assert lib.count_patterns() == 550 and lib.count_patterns({"model_id": "knn"}) == 150

    def own(table: pa.Table, i: int, model: str | None):
        q = table.column("vector").combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)[i]
        flt = {"model_id": model} if model else None
        return lib.search(q, 5, flt, exact=True).neighbors

    for table, model in ((wide_a, "chartnet"), (wide_b, "other"), (narrow, "knn")):
        nb = own(table, 17, model)
        assert nb["model_id"].unique().to_list() == [model]
        assert nb["ts_init"][0] == 17 * MIN and nb["_distance"][0] == pytest.approx(0.0, abs=1e-5)
    # A 32-wide query without a model filter: only one 32-wide model, so it is the one searched.
    assert own(narrow, 3, None)["model_id"].unique().to_list() == ["knn"]
    # Two 64-wide models: distances between them mean nothing, so the query must name one.
    with pytest.raises(DataError, match="64-wide embeddings of 2 models .*filter on one model_id"):
        own(wide_a, 3, None)
    with pytest.raises(DataError, match=r"query embedding has 32 values; the patterns of chartnet have \[64\]"):
        lib.search(np.ones(32), 5, {"model_id": "chartnet"})
    # Thumbnails and indexes follow the model too.
    assert lib.thumbnail("knn|EURUSD|1m|0") is None and lib.count_patterns({"model_id": "nobody"}) == 0
    st = lib.ensure_index("knn", force=True)
    assert (st.action, st.rows) == ("built", 150)
    assert lib.index_status("chartnet").indexed_rows == 0


def test_a_single_table_library_left_by_an_earlier_version_is_moved_not_lost(tmp_path: Path):
    """Libraries written before per-model tables have one ``patterns`` table (here 64-wide chartnet)."""
    path = tmp_path / "lib"
    old = patterns(120, 64, "chartnet")
    ids = pa.array([f"chartnet|EURUSD|1m|{t}" for t in old["ts_init"].to_pylist()])
    legacy = pa.table({f.name: (ids if f.name == "pattern_id" else old[f.name] if f.name in old.column_names
                                else pa.nulls(old.num_rows, f.type)) for f in pattern_schema(64)},
                      schema=pattern_schema(64))
    lancedb.connect(str(path)).create_table("patterns", legacy)

    lib = PatternLibrary(path)
    lib.add_patterns(patterns(50, 32, "knn"))  # what model=knn_analogs does after that chartnet run
    assert lib.models() == {"chartnet": pattern_table_name("chartnet", 64), "knn": pattern_table_name("knn", 32)}
    assert "patterns" not in lancedb.connect(str(path)).list_tables().tables
    moved = lib.table(pattern_table_name("chartnet", 64)).to_arrow().sort_by("ts_init")
    assert moved["pattern_id"].to_pylist() == ids.to_pylist()
    assert moved["vector"].to_pylist() == old["vector"].to_pylist()
    assert lib.count_patterns({"model_id": "knn"}) == 50


@pytest.mark.slow
def test_knn_analogs_runs_on_a_library_holding_chartnet_embeddings(tmp_path: Path):
    """The README tour: model=chartnet fills the shared library with 64-wide embeddings, then
    model=knn_analogs (32-wide price paths) uses the same library."""
    from _model_data import small_bars, small_dataset

    from aio.models.base import ModelContext
    from aio.models.config import KnnAnalogsConfig
    from aio.models.knn import KnnAnalogsModel
    from aio.store.config import LanceDBStoreConfig

    lib_path = tmp_path / "lib"
    PatternLibrary(lib_path).add_patterns(patterns(500, 64, "chartnet-weights"))
    bars = small_bars()
    info = small_dataset(tmp_path / "data", bars)

    def fit(backend: str, lib: Path | None):
        ctx = ModelContext(dataset_path=info.path, out_dir=tmp_path / backend, seed=3, bars=bars,
                           store=LanceDBStoreConfig(path=str(lib)) if lib else None, run_id="t", synthetic=True)
        return KnnAnalogsModel(KnnAnalogsConfig(k=10, backend=backend, folds=3)).fit(ctx)

    lib_run, mem_run = fit("library", lib_path), fit("memory", None)
    assert lib_run.patterns_stored
    assert (mem_run.predicted == lib_run.predicted).mean() > 0.99  # same answers as exact search of this run
    lib = PatternLibrary(lib_path)
    assert lib.count_patterns({"model_id": "chartnet-weights"}) == 500
    assert lib.count_patterns({"model_id": lib_run.model_id}) == len(lib_run.table)
