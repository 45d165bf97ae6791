"""knn_analogs: training-free embeddings, the time filter (only patterns whose label horizon
closed before the query bar), and the LanceDB library backend against exact search."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _model_data import small_bars, small_dataset  # noqa: E402

from aio.models.base import ModelContext  # noqa: E402
from aio.models.config import KnnAnalogsConfig  # noqa: E402
from aio.models.knn import (  # noqa: E402
    KnnAnalogsModel,
    memory_neighbors,
    predict_from_neighbors,
    price_path_embedding,
)
from aio.store import PatternLibrary  # noqa: E402
from aio.store.config import LanceDBStoreConfig  # noqa: E402


def test_price_path_embedding_is_causal_unit_and_scale_free():
    rng = np.random.default_rng(0)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 1e-4, 500)))
    ends = np.arange(40, 480, 7)
    e, valid = price_path_embedding(close, ends, 32, 16)
    assert valid.all() and np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-6)
    later = close.copy()
    later[300:] *= 1.05  # change the future of bar 299
    e2, _ = price_path_embedding(later, ends, 32, 16)
    past = ends < 300
    assert np.array_equal(e[past], e2[past]) and not np.allclose(e[~past], e2[~past])
    e3, _ = price_path_embedding(close * 150.0, ends, 32, 16)  # USDJPY-sized prices: same shapes
    assert np.allclose(e, e3, atol=1e-5)
    assert not price_path_embedding(close, np.array([10]), 32, 16)[1][0]


def test_memory_neighbors_match_brute_force_under_the_time_filter():
    rng = np.random.default_rng(1)
    n, k, h = 300, 7, 3
    emb = rng.normal(size=(n, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ts = np.arange(n) * 60 + 1000
    label_end = ts + h * 60  # label known h bars later
    idx, dist = memory_neighbors(emb.astype(np.float32), label_end, ts, k, chunk=64)
    for i in range(n):
        eligible = np.flatnonzero(label_end < ts[i])
        d = 1 - emb[eligible] @ emb[i]
        want = eligible[np.argsort(d, kind="stable")[:k]]
        got = idx[i][idx[i] >= 0]
        assert list(got) == list(want), i
        assert (label_end[got] < ts[i]).all()  # never an outcome from the query's future
    assert (idx[: h + 1] == -1).all()  # the first bars have no closed pattern at all


def test_predictions_from_neighbours():
    labels = np.array([[1, 1, -1, 0], [1, 1, 1, 1]])
    rets = np.array([[0.01, 0.02, -0.01, 0.0], [0.1, 0.1, 0.1, 0.1]])
    dist = np.array([[0.1, 0.1, 0.1, np.inf], [0.1, 0.2, np.inf, np.inf]])
    p, r, count = predict_from_neighbors(labels, rets, dist, min_neighbors=3, smoothing=1.0)
    assert count.tolist() == [3, 2]
    assert np.allclose(p[0], [(1 + 1) / 6, (0 + 1) / 6, (2 + 1) / 6])  # (count + s) / (k + 3 s), the inf is not a neighbour
    assert r[0] == pytest.approx(np.mean([0.01, 0.02, -0.01]))
    assert np.isnan(p[1]).all() and np.isnan(r[1])  # fewer than min_neighbors


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("knn")
    bars = small_bars()
    return root, bars, small_dataset(root, bars)


def _fit(info, bars, out: Path, backend: str, lib: Path | None = None):
    cfg = KnnAnalogsConfig(k=10, backend=backend, folds=3)
    ctx = ModelContext(dataset_path=info.path, out_dir=out, seed=3, bars=bars,
                       store=LanceDBStoreConfig(path=str(lib)) if lib else None, run_id="t", synthetic=True)
    return KnnAnalogsModel(cfg).fit(ctx)


def test_library_backend_agrees_with_exact_search_and_respects_time(data, tmp_path):
    root, bars, info = data
    mem = _fit(info, bars, tmp_path / "mem", "memory")
    lib_path = tmp_path / "lib"
    lib = _fit(info, bars, tmp_path / "lib_run", "library", lib_path)
    assert lib.patterns_stored and not mem.patterns_stored
    both = mem.predicted & lib.predicted
    assert (mem.predicted == lib.predicted).mean() > 0.99
    same = np.isclose(mem.proba[both], lib.proba[both]).all(axis=1)
    assert same.mean() > 0.97  # near-ties may order differently in float32
    # the earliest bars have no pattern whose outcome was known yet
    t = mem.table
    first = int(np.argmax(mem.predicted))
    assert first > 0 and not mem.predicted[:first].any()
    # every neighbour the library returns closed before its query bar
    pl = PatternLibrary(lib_path)
    flt = {"model_id": lib.model_id}
    assert pl.count_patterns(flt) == len(t)
    for i in (first, len(t) // 2, len(t) - 1):
        res = pl.search(lib.embeddings[i], 10, flt, ts_before=int(t.ts_init[i]), columns=["label_end_ts", "ts_init"])
        ends = res.neighbors["label_end_ts"].to_numpy()
        assert len(ends) and (ends < t.ts_init[i]).all()
    # a second run upserts the same patterns (same recipe -> same model_id), no duplicates
    again = _fit(info, bars, tmp_path / "lib_run2", "library", lib_path)
    assert again.model_id == lib.model_id and pl.count_patterns(flt) == len(t)
    assert np.array_equal(again.proba, lib.proba, equal_nan=True)
    # metrics: OOS scores next to the baselines, over the same rows
    oos = mem.metrics["oos"]
    assert oos["model"]["n"] == oos["majority"]["n"] == oos["logreg"]["n"] > 0


def test_image_embedding_backend(data, tmp_path):
    root, bars, info = data
    cfg = KnnAnalogsConfig(k=5, backend="memory", embedding="image", dim=16, folds=2)
    ctx = ModelContext(dataset_path=info.path, out_dir=tmp_path, seed=3, bars=bars)
    r = KnnAnalogsModel(cfg).fit(ctx)
    assert r.embeddings.shape == (len(r.table), 16 * 16)
    assert np.allclose(np.linalg.norm(r.embeddings, axis=1), 1.0, atol=1e-5)
    assert r.predicted.sum() > len(r.table) // 2 and r.model_id.startswith("knn-image-")
