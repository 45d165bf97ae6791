"""Pattern library on LanceDB: writes, idempotence, search (exact + ANN), filters, no lookahead."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from omegaconf import OmegaConf

from aio.config import build
from aio.errors import AioError, ConfigError, DataError
from aio.store import (
    LanceDBStoreConfig,
    PatternFilter,
    PatternLibrary,
    PatternRecord,
    PerformanceRecord,
    StrategyRecord,
    model_id_from_weights,
    outcome_stats,
    png_thumbnail,
    resolve_path,
)
from aio.store.thumbnail import decode_png

REPO = Path(__file__).resolve().parent.parent
HOUR = 3_600_000_000_000
SYMBOLS = ["EURUSD", "GBPUSD", "USDJPY"]
REGIMES = ["trend", "range", None]


def make_table(n: int, dim: int = 16, seed: int = 0, model_id: str = "m1", horizon: int = 5) -> pa.Table:
    """Clustered unit vectors with pattern metadata (ts_init = i hours)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, dim))
    x = centres[rng.integers(0, 12, n)] + 0.3 * rng.normal(size=(n, dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    ts = np.arange(n, dtype=np.int64) * HOUR
    fwd = rng.normal(scale=1e-3, size=n)
    return pa.table({
        "model_id": [model_id] * n,
        "symbol": [SYMBOLS[i % 3] for i in range(n)],
        "timeframe": ["1h" if i % 2 else "4h" for i in range(n)],
        "ts_init": ts,
        "label_end_ts": ts + horizon * HOUR,
        "horizon_bars": pa.array([horizon] * n, pa.int32()),
        "regime": [REGIMES[(i // 3) % 3] for i in range(n)],
        "fwd_return": fwd,
        "label": pa.array(np.sign(np.round(fwd / 5e-4)).astype(np.int8)),
        "mfe": np.abs(fwd) * 2,
        "mae": -np.abs(fwd),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim),
    })


def vectors(table: pa.Table) -> np.ndarray:
    col = table.column("vector").combine_chunks()
    return col.flatten().to_numpy().reshape(len(table), col.type.list_size)


def numpy_topk(x: np.ndarray, q: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[int]:
    """Reference: exact cosine neighbours with plain numpy."""
    d = 1 - (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    if mask is not None:
        d = np.where(mask, d, np.inf)
    order = np.argsort(d, kind="stable")
    return [int(i) for i in order[:k] if np.isfinite(d[i])]


def rows_of(res) -> list[int]:
    return (res.neighbors["ts_init"].to_numpy() // HOUR).tolist()


@pytest.fixture()
def lib(tmp_path: Path) -> PatternLibrary:
    return PatternLibrary(tmp_path / "lib")


@pytest.fixture(scope="module")
def data() -> pa.Table:
    return make_table(600)


# -- config and plugin ---------------------------------------------------------------------


def test_registered_as_store_plugin_with_typed_config():
    from aio.registry import registry

    plugin = registry.get_plugin("store", "lancedb")
    assert plugin.config is LanceDBStoreConfig
    yaml = OmegaConf.load(REPO / "conf" / "store" / "lancedb.yaml")
    assert yaml.name == "lancedb"
    cfg = build(LanceDBStoreConfig, yaml, "store")
    assert cfg == LanceDBStoreConfig()  # the YAML spells out the dataclass defaults
    with pytest.raises(ConfigError, match=r"store\.index\.type='HNSW'.*IVF_PQ"):
        build(LanceDBStoreConfig, {"index": {"type": "HNSW"}}, "store")
    with pytest.raises(ConfigError, match=r"store\.search\.nprobes=0 is out of range"):
        build(LanceDBStoreConfig, {"search": {"nprobes": 0}}, "store")


def test_path_resolution(tmp_path: Path):
    import platformdirs

    assert resolve_path(LanceDBStoreConfig()) == Path(platformdirs.user_cache_dir("aio")) / "patterns.lancedb"
    assert resolve_path(LanceDBStoreConfig(location="run"), tmp_path) == tmp_path / "patterns.lancedb"
    assert resolve_path(LanceDBStoreConfig(path=str(tmp_path / "x")), tmp_path) == tmp_path / "x"
    with pytest.raises(ConfigError, match="run folder"):
        resolve_path(LanceDBStoreConfig(location="run"))
    from aio.registry import registry

    lib = registry.get("store", "lancedb")(LanceDBStoreConfig(location="run"), tmp_path)
    assert lib.path == tmp_path / "patterns.lancedb" and lib.path.is_dir()


# -- writes ---------------------------------------------------------------------------------


def test_records_round_trip_with_thumbnail(lib: PatternLibrary):
    img = np.linspace(0, 1, 120 * 90 * 3).reshape(90, 120, 3)
    thumb = png_thumbnail(img, max_side=32)
    assert max(decode_png(thumb).shape[:2]) == 32
    recs = [
        PatternRecord(embedding=np.arange(8, dtype=np.float32) + i, model_id="abc", symbol="EURUSD",
                      timeframe="1h", ts_init=i * HOUR, label_end_ts=(i + 3) * HOUR, fwd_return=0.001 * i,
                      label=1 if i else 0, horizon_bars=3, regime="trend" if i else None,
                      thumbnail=thumb if i == 1 else None)
        for i in range(3)
    ]
    res = lib.add_patterns(recs)
    assert (res.inserted, res.updated, lib.count_patterns(), lib.dim) == (3, 0, 3, 8)
    got = lib.table("patterns").to_arrow().sort_by("ts_init")
    assert got["pattern_id"].to_pylist()[1] == f"abc|EURUSD|1h|{HOUR}"
    assert got["regime"].to_pylist() == [None, "trend", "trend"]
    np.testing.assert_array_equal(vectors(got)[2], np.arange(8) + 2)
    assert lib.thumbnail(f"abc|EURUSD|1h|{HOUR}") == thumb
    assert lib.thumbnail(f"abc|EURUSD|1h|0") is None


def test_writes_are_idempotent_whatever_the_input_form(lib: PatternLibrary, data: pa.Table):
    first = lib.add_patterns(data)
    assert (first.inserted, lib.count_patterns()) == (600, 600)
    again = lib.add_patterns(pl.from_arrow(data))  # same rows as a polars frame
    assert (again.inserted, again.updated, lib.count_patterns()) == (0, 600, 600)
    # A batched write (list of tables) overlapping what is stored adds only the new keys.
    more = make_table(700)
    res = lib.add_patterns([more.slice(0, 350), more.slice(350)])
    assert (res.inserted, lib.count_patterns()) == (100, 700)
    ids = lib.table("patterns").to_arrow()["pattern_id"]
    assert len(ids) == len(set(ids.to_pylist()))


def test_on_conflict_update_vs_skip(tmp_path: Path, data: pa.Table):
    changed = data.set_column(data.schema.get_field_index("fwd_return"), "fwd_return",
                              pa.array(np.full(len(data), 0.5)))
    for mode, expected in (("update", 0.5), ("skip", None)):
        lib = PatternLibrary(tmp_path / mode, LanceDBStoreConfig(on_conflict=mode))
        lib.add_patterns(data)
        lib.add_patterns(changed)
        got = lib.table("patterns").to_arrow().sort_by("ts_init")["fwd_return"].to_numpy()
        want = np.full(len(data), 0.5) if expected else data["fwd_return"].to_numpy()
        np.testing.assert_array_equal(got, want)
        assert lib.count_patterns() == len(data)


def test_duplicate_keys_in_one_write_keep_the_last(lib: PatternLibrary, data: pa.Table):
    dup = pa.concat_tables([data.slice(0, 5), data.slice(0, 5)])
    dup = dup.set_column(dup.schema.get_field_index("fwd_return"), "fwd_return",
                         pa.array([0.0] * 5 + [1.0] * 5))
    lib.add_patterns(dup)
    assert lib.count_patterns() == 5
    assert lib.table("patterns").to_arrow()["fwd_return"].to_pylist() == [1.0] * 5


@pytest.mark.parametrize("change, message", [
    (lambda t: t.set_column(t.schema.get_field_index("label"), "label", pa.array([2] * len(t), pa.int8())),
     "labels are -1"),
    (lambda t: t.set_column(t.schema.get_field_index("label_end_ts"), "label_end_ts", t["ts_init"]),
     "label_end_ts .* is not after ts_init"),
    (lambda t: t.drop_columns(["symbol"]), "lacks required columns"),
])
def test_bad_rows_are_refused_with_the_reason(lib: PatternLibrary, data: pa.Table, change, message):
    with pytest.raises(DataError, match=message):
        lib.add_patterns(change(data.slice(0, 4)))
    assert lib.count_patterns() == 0


def test_bad_vectors_are_refused(lib: PatternLibrary, data: pa.Table):
    x = vectors(data.slice(0, 4)).copy()
    x[2, 3] = np.nan
    bad = data.slice(0, 4).set_column(data.schema.get_field_index("vector"), "vector",
                                      pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 16))
    with pytest.raises(DataError, match="row 2 has NaN"):
        lib.add_patterns(bad)
    lib.add_patterns(data.slice(0, 4))
    # Another width is another embedding space: its own table (tests/test_store_concurrency.py).
    lib.add_patterns(make_table(4, dim=8))
    assert lib.count_patterns() == 8 and lib.dim is None
    with pytest.raises(DataError, match=r"query embedding has 3 values; the patterns of m1 have \[8, 16\]"):
        lib.search([1.0, 0.0, 0.0], filters={"model_id": "m1"})


# -- exact search ---------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
@pytest.mark.parametrize("memory_mb", [64, 0])  # numpy snapshot / LanceDB flat scan
def test_exact_search_matches_numpy(tmp_path: Path, data: pa.Table, metric: str, memory_mb: int):
    lib = PatternLibrary(tmp_path / "lib", LanceDBStoreConfig(metric=metric, memory_mb=memory_mb))
    lib.add_patterns(data)
    x = vectors(data).astype(np.float64)
    q = np.random.default_rng(5).normal(size=16)
    want = {"cosine": 1 - x @ q / (np.linalg.norm(x, axis=1) * np.linalg.norm(q)),
            "l2": ((x - q) ** 2).sum(1), "dot": 1 - x @ q}[metric]
    res = lib.search(q, k=7)
    assert (lib._snap is not None) == (memory_mb > 0)  # which engine answered
    idx = rows_of(res)
    assert idx == np.argsort(want, kind="stable")[:7].tolist()
    np.testing.assert_allclose(res.neighbors["_distance"].to_numpy(), want[idx], rtol=1e-5, atol=1e-5)


def test_filters_restrict_neighbours_like_a_numpy_mask(lib: PatternLibrary, data: pa.Table):
    lib.add_patterns(data)
    x = vectors(data)
    meta = pl.from_arrow(data.drop_columns(["vector"]))
    q = x[123] + 0.05
    flt = PatternFilter(symbol=["EURUSD", "USDJPY"], timeframe="1h", regime="range",
                        ts_from=100 * HOUR, ts_to=500 * HOUR)
    mask = (meta["symbol"].is_in(["EURUSD", "USDJPY"]) & (meta["timeframe"] == "1h")
            & (meta["regime"] == "range") & (meta["ts_init"] >= 100 * HOUR)
            & (meta["ts_init"] < 500 * HOUR)).fill_null(False).to_numpy()
    want = numpy_topk(x, q, 10, mask)
    memory = lib.search(q, 10, flt)
    flat = lib.search(q, 10, {"symbol": ["EURUSD", "USDJPY"], "timeframe": "1h", "regime": "range",
                              "ts_from": 100 * HOUR, "ts_to": 500 * HOUR}, exact=True)
    assert rows_of(memory) == want
    lib.cfg.memory_mb = 0  # force the LanceDB scan with a SQL where clause
    lib._invalidate()
    assert rows_of(lib.search(q, 10, flt)) == want == rows_of(flat)
    assert lib.count_patterns(flt) == int(mask.sum())
    with pytest.raises(AioError, match="unknown pattern filter 'symbols'"):
        lib.search(q, 10, {"symbols": "EURUSD"})


@pytest.mark.parametrize("memory_mb", [64, 0])
def test_ts_before_uses_only_labels_closed_before_the_query_bar(tmp_path: Path, data: pa.Table, memory_mb):
    lib = PatternLibrary(tmp_path / "lib", LanceDBStoreConfig(memory_mb=memory_mb))
    lib.add_patterns(data)
    x = vectors(data)
    q_row = 300  # query bar: ts_init = 300 h; its own pattern is labelled until 305 h
    q_ts = q_row * HOUR
    res = lib.search(x[q_row], k=20, ts_before=q_ts)
    end = res.neighbors["label_end_ts"].to_numpy()
    assert len(end) == 20 and (end < q_ts).all()
    # Patterns 295..300 overlap the query bar: their labels end at or after it.
    assert not set(rows_of(res)) & set(range(q_row - 5, len(data)))
    assert rows_of(res) == numpy_topk(x, x[q_row], 20, data["label_end_ts"].to_numpy() < q_ts)
    # Without the bound the query's own (future-labelled) pattern is the nearest.
    assert rows_of(lib.search(x[q_row], k=1))[0] == q_row
    # The bound is strict: a label closing exactly at the query bar is excluded.
    assert lib.search(x[q_row - 5], 1, ts_before=q_ts).neighbors["label_end_ts"][0] < q_ts
    # Nothing labelled yet -> no neighbours, NaN statistics.
    empty = lib.search(x[0], 5, ts_before=5 * HOUR)
    assert empty.stats.count == 0 and np.isnan(empty.stats.mean_fwd_return)


def test_search_many_equals_single_searches(lib: PatternLibrary, data: pa.Table):
    lib.add_patterns(data)
    x = vectors(data)
    rows = [50, 200, 400, 599]
    ts = [r * HOUR for r in rows]
    many = lib.search_many(x[rows], k=8, filters={"regime": "trend"}, ts_before=ts)
    for r, t, res in zip(rows, ts, many):
        single = lib.search(x[r], 8, {"regime": "trend"}, ts_before=t, exact=True)
        assert rows_of(res) == rows_of(single)
        # Block matrix products round differently from one matrix-vector product (float32).
        assert res.stats.mean_fwd_return == single.stats.mean_fwd_return
        assert res.stats.mean_distance == pytest.approx(single.stats.mean_distance, rel=1e-5)


def test_outcome_stats_of_the_neighbours(lib: PatternLibrary, data: pa.Table):
    lib.add_patterns(data)
    res = lib.search(vectors(data)[10], k=25)
    nb = res.neighbors
    fwd, lab = nb["fwd_return"].to_numpy(), nb["label"].to_numpy()
    s = res.stats
    assert s.count == 25
    assert s.mean_fwd_return == pytest.approx(np.mean(fwd))
    assert s.median_fwd_return == pytest.approx(np.median(fwd))
    assert s.std_fwd_return == pytest.approx(np.std(fwd, ddof=1))
    assert (s.p_up, s.p_flat, s.p_down) == pytest.approx(((lab == 1).mean(), (lab == 0).mean(), (lab == -1).mean()))
    assert s.p_up + s.p_flat + s.p_down == pytest.approx(1.0)
    assert s.mean_mfe == pytest.approx(nb["mfe"].mean()) and s.mean_mae == pytest.approx(nb["mae"].mean())
    w = 1 / (nb["_distance"].to_numpy().astype(float) + 1e-6)
    assert s.weighted_mean_fwd_return == pytest.approx((w * fwd).sum() / w.sum())
    assert outcome_stats([0.01, -0.02], [1, -1]).p_flat == 0.0


# -- ANN index --------------------------------------------------------------------------------


def test_ann_index_lifecycle_recall_and_filters(tmp_path: Path):
    cfg = LanceDBStoreConfig(ann_threshold=3000)
    cfg.index = replace(cfg.index, target_partition_size=300, max_iterations=10)
    lib = PatternLibrary(tmp_path / "lib", cfg)
    table = make_table(4500, dim=16, seed=1)
    lib.add_patterns(table.slice(0, 2000))
    st = lib.ensure_index()
    assert st.action == "none" and "exact search, no index yet" in st.reason
    lib.add_patterns(table.slice(2000, 1500))
    st = lib.ensure_index()
    assert (st.action, st.index_type, st.indexed_rows) == ("built", "IVF_PQ", 3500)
    lib.add_patterns(table.slice(3500, 300))  # < 20% new: searched exactly beside the index
    st = lib.ensure_index()
    assert (st.action, st.indexed_rows, st.rows) == ("none", 3500, 3800)
    assert "300 new rows searched exactly" in st.reason
    x = vectors(table)
    assert rows_of(lib.search(x[3700], 1)) == [3700]  # an unindexed row is found
    lib.add_patterns(table.slice(3800))  # now 1000 new rows > 20% of 3500
    st = lib.ensure_index()
    assert (st.action, st.indexed_rows) == ("rebuilt", 4500)
    assert lib.ensure_index().reason == "index current"

    x = vectors(table)
    queries = np.random.default_rng(9).normal(size=(20, 16)).astype(np.float32)
    hits = sum(len(set(rows_of(lib.search(q, 10))) & set(numpy_topk(x, q, 10))) for q in queries)
    assert hits / 200 >= 0.9
    # Prefiltered ANN search: a narrow filter still yields k rows, all passing it.
    flt = {"symbol": "GBPUSD", "regime": "range", "timeframe": "1h"}
    res = lib.search(queries[0], 10, flt, ts_before=1000 * HOUR)
    nb = res.neighbors
    assert len(nb) == 10
    assert (nb["symbol"] == "GBPUSD").all() and (nb["regime"] == "range").all()
    assert (nb["label_end_ts"] < 1000 * HOUR).all()
    exact = lib.search(queries[0], 10, flt, ts_before=1000 * HOUR, exact=True)
    assert len(set(rows_of(res)) & set(rows_of(exact))) >= 8
    # One probed list holds fewer than 10 such rows: the search widens instead of coming back short.
    narrow = lib.search(queries[0], 10, flt, ts_before=1000 * HOUR, nprobes=1).neighbors
    assert len(narrow) == 10 and (narrow["label_end_ts"] < 1000 * HOUR).all()
    # Neighbour columns from the in-memory row cache == fetched from LanceDB.
    plain = PatternLibrary(lib.path, replace(cfg, search=replace(cfg.search, cache_rows=False)))
    for q in queries[:5]:
        cached = lib.search(q, 10, {"regime": ["trend", "range"]}, ts_before=3000 * HOUR)
        assert lib._rows is not None
        fetched = plain.search(q, 10, {"regime": ["trend", "range"]}, ts_before=3000 * HOUR)
        assert cached.neighbors.equals(fetched.neighbors) and cached.stats == fetched.stats
    assert plain._rows is None
    names = {i.name for i in lib.table("patterns").list_indices()}
    assert {"label_end_ts_idx", "symbol_idx", "regime_idx"} <= names  # filter columns indexed


def test_index_is_built_early_when_vectors_outgrow_memory(tmp_path: Path):
    lib = PatternLibrary(tmp_path / "lib", LanceDBStoreConfig(memory_mb=1))  # 1 MB = 2048 x 128-d
    lib.add_patterns(make_table(2000, dim=128))
    assert lib.ensure_index().action == "none"
    lib.add_patterns(make_table(2100, dim=128))
    st = lib.ensure_index()
    assert (st.action, st.indexed_rows) == ("built", 2100)


# -- strategies and performance -----------------------------------------------------------------


def test_strategies_and_performance_history(lib: PatternLibrary):
    definition = {"rules": [{"id": "Long", "when": "crossover(fast_ma, slow_ma)"}]}
    s1 = StrategyRecord("sma_cross", definition, {"fast": 10, "slow": 30}, {"sharpe": 1.1}, symbol="EURUSD")
    s2 = StrategyRecord("sma_cross", definition, {"fast": 12, "slow": 30}, {"sharpe": 0.7})
    ids = lib.add_strategy([s1, s2])
    assert len(set(ids)) == 2
    lib.add_strategy(replace(s1, metrics={"sharpe": 1.3}))  # same id: metrics updated
    assert len(lib.strategies()) == 2
    got = lib.get_strategy(ids[0])
    assert (got.definition, got.params, got.metrics) == (definition, {"fast": 10, "slow": 30}, {"sharpe": 1.3})
    with pytest.raises(AioError, match="no strategy 'nope'"):
        lib.get_strategy("nope")

    rows = [PerformanceRecord("run-1", ids[0], fold=f, segment=seg, sharpe=0.1 * f, n_trades=10 + f,
                              metrics={"cagr": 0.05}, synthetic=True)
            for f in range(3) for seg in ("train", "test")]
    assert lib.add_performance(rows).inserted == 6
    assert lib.add_performance(rows).inserted == 0  # re-running the run adds nothing
    lib.add_performance(PerformanceRecord("run-2", ids[1], fold=0))
    perf = lib.performance(strategy_id=ids[0])
    assert len(perf) == 6 and perf["fold"].to_list() == [0, 0, 1, 1, 2, 2]
    assert perf.filter(pl.col("segment") == "test")["n_trades"].to_list() == [10, 11, 12]
    assert len(lib.performance(run_id="run-2")) == 1 and len(lib.performance()) == 7


def test_model_id_is_a_hash_of_the_weights():
    import torch
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    a = model_id_from_weights(net.state_dict())
    assert a == model_id_from_weights({k: v.clone() for k, v in net.state_dict().items()})
    with torch.no_grad():
        net.bias[0] += 1e-6
    assert model_id_from_weights(net.state_dict()) != a
    assert len(a) == 16
