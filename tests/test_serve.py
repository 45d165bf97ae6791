"""task=serve over real HTTP on loopback: a small chartnet run served by LitServe."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import polars as pl
import pytest

from tests._model_data import small_bars
from tests._serve_process import serving


@pytest.fixture(scope="module")
def ai_run(small_ai_run):
    return small_ai_run  # the same small chartnet run test_models_pipeline checks (built once per session)


@pytest.fixture(scope="module")
def server(ai_run, tmp_path_factory):
    run_dir, lib = ai_run
    with serving(run_dir, lib, tmp_path_factory.mktemp("serve-run"), "serve.batch_timeout=0.02") as url:
        yield url


@pytest.fixture(scope="module")
def bars():
    return small_bars(end="2024-03-07").frame


def _window(frame: pl.DataFrame, end: int, n: int | None = None) -> list[dict]:
    part = frame.head(end + 1) if n is None else frame.slice(end + 1 - n, n)
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
            for r in part.to_dicts()]


@pytest.mark.slow
def test_predict_equals_the_runs_own_predictions(server, ai_run, bars):
    run_dir, _ = ai_run
    p = pl.read_parquet(run_dir / "predictions.parquet")
    last = p.filter(pl.col("fold") == p["fold"].max()).sample(12, seed=3)  # rows the served (last) fold predicted
    bodies = [{"bars": _window(bars, int(b))} for b in last["bar_index"]]
    with ThreadPoolExecutor(12) as ex:  # concurrent: the server batches them
        resp = list(ex.map(lambda b: httpx.post(server + "/predict", json=b, timeout=60), bodies))
    for r, row in zip(resp, last.iter_rows(named=True)):
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["ts_init"] == row["ts_init"]
        for k in ("p_down", "p_flat", "p_up"):
            assert abs(got[k] - row[k]) < 1e-6, (k, got[k], row[k])
        assert abs(got["p_down"] + got["p_flat"] + got["p_up"] - 1.0) < 1e-9


@pytest.mark.slow
def test_bad_requests_get_4xx_with_the_reason(server, bars):
    cases = [
        ({"bars": []}, "needs at least"),
        ({"bars": _window(bars, 300, 20)}, "needs at least"),
        ({"bars": _window(bars, 300)[::-1]}, "increasing ts_init"),
        ({"bars": [{"ts_event": 1, "ts_init": 2, "open": 1.0}]}, "high"),
        ({"window": []}, "bars"),
        ({"bars": [dict(b, high=b["low"] * 0.5) for b in _window(bars, 300)]}, "outside low..high"),
    ]
    for body, why in cases:
        r = httpx.post(server + "/predict", json=body, timeout=30)
        assert 400 <= r.status_code < 500, (r.status_code, r.text)
        assert why in r.text, r.text
    r = httpx.post(server + "/predict", content=b"{not json", headers={"content-type": "application/json"},
                   timeout=30)
    assert 400 <= r.status_code < 500


@pytest.mark.slow
def test_similar_is_time_safe(server, bars, ai_run):
    run_dir, _ = ai_run
    emb = pl.read_parquet(run_dir / "embeddings.parquet")
    end = int(emb["bar_index"][emb.height * 2 // 3])
    r = httpx.post(server + "/similar", json={"bars": _window(bars, end), "k": 5}, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    ts = int(bars["ts_init"][end])
    assert out["query_ts_init"] == ts
    assert len(out["neighbors"]) == 5
    assert all(n["label_end_ts"] < ts for n in out["neighbors"])
    dist = [n["_distance"] for n in out["neighbors"]]
    assert dist == sorted(dist)


@pytest.mark.slow
def test_analyze_without_a_vlm_is_404_with_the_reason(server):
    r = httpx.post(server + "/analyze", json={"ts": "2024-03-06T12:00"}, timeout=30)
    assert r.status_code == 404 and "has no VLM" in r.text


@pytest.mark.slow
def test_openapi_describes_the_endpoints(server):
    spec = httpx.get(server + "/openapi.json", timeout=30).json()
    for path in ("/predict", "/similar", "/analyze", "/health"):
        assert path in spec["paths"], path
    schemas = json.dumps(spec["components"]["schemas"])
    assert "bars" in schemas and "ts_init" in schemas
