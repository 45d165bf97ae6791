"""Whole runs: synthetic data is labelled in every file, the headline is out of sample when a
search ran, ruin is recorded and voids the ratios, and the sweeper gets the headline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(tmp_path: Path, name: str, *over: str) -> Path:
    out = tmp_path / name
    p = subprocess.run([sys.executable, "-m", "aio", f"hydra.run.dir={out}", *over], capture_output=True, text=True,
                       timeout=600, cwd=REPO)
    assert p.returncode == 0, p.stderr[-4000:]
    return out


@pytest.mark.slow
def test_synthetic_run_is_labelled_in_every_file_and_leads_with_out_of_sample(tmp_path):
    import pyarrow.parquet as pq

    run = _run(tmp_path, "syn", "+experiment=eurusd_14d", "data=synthetic", "data.end=2024-03-08",
               "optimize.n_trials=12", "trainer.max_epochs=1", "model.folds=2", "store.path=" + str(tmp_path / "lib"))
    files = [p for p in run.rglob("*") if p.is_file() and not p.name.startswith(".")]
    kinds = {p.suffix for p in files}
    assert {".csv", ".parquet", ".json", ".html", ".pine"} <= kinds
    assert any(p.parent.name == "model" for p in files) and any(p.parent.name == "optimize" for p in files)
    for p in files:
        if p.suffix == ".csv":
            df = pl.read_csv(p, infer_schema_length=0)
            assert "synthetic" in df.columns and set(df["synthetic"].to_list()) <= {"true"}, p
        elif p.suffix == ".parquet":
            meta = pq.read_schema(p).metadata or {}
            assert meta.get(b"aio.synthetic") == b"true", p
        elif p.suffix == ".json":
            obj = json.loads(p.read_text())
            assert not isinstance(obj, dict) or obj.get("synthetic") not in (None, False, "false"), p
        elif p.suffix == ".html":
            assert "SYNTHETIC DATA" in p.read_text(), p
        elif p.suffix == ".pine":
            text = p.read_text()
            assert any("SYNTHETIC" in line for line in text.splitlines()[:4]) and "(SYNTHETIC)" in text, p
    m = json.loads((run / "metrics.json").read_text())
    head = m["headline"]
    assert head["sample"] == "out_of_sample"
    # the headline is the stitched out-of-sample block, not the full-period backtest
    assert head["metrics"]["net_profit"] == pytest.approx(m["optimize"]["oos"]["net_profit"])
    assert head["bars"] < m["backtest"]["trade_count"] * 10_000
    assert all(isinstance(w, str) for w in head["warnings"])


@pytest.mark.slow
def test_far_too_much_size_ruins_and_voids_the_ratios(tmp_path):
    run = _run(tmp_path, "ruin", "data=synthetic", "data.end=2024-03-06", "backtest.qty=1e9",
               "strategy=sma_cross", "strategy.params.fast=5", "strategy.params.slow=20")
    m = json.loads((run / "metrics.json").read_text())["backtest"]
    assert m["ruin"] is not None and m["ruin"]["bar"] >= 0
    for k in ("sharpe", "sortino", "calmar"):
        assert m[k] is None and m["undefined"][k].startswith("ruin at bar")
    trades = pl.read_csv(run / "trades.csv")
    # nothing trades after the ruin bar, and the books balance
    assert trades["exit_bar"].max() <= m["ruin"]["bar"]
    assert trades["pnl"].sum() == pytest.approx(m["net_profit"], rel=1e-9, abs=1e-6)


@pytest.mark.slow
def test_synthetic_gbpjpy_converts_through_a_synthetic_usdjpy_series(tmp_path):
    """Each trade's USD P&L is its JPY P&L at USDJPY's price of the exit fill's bar, where
    that USDJPY series is generated independently here with the same source and range."""
    import numpy as np

    from aio.bars import bars_from_market
    from aio.config import build
    from aio.data.synthetic import SyntheticDataConfig, SyntheticSource

    run = _run(tmp_path, "gbpjpy", "data=synthetic", "data.symbol=GBPJPY", "data.base_price=190",
               "data.end=2024-03-06", "+backtest.conversion_data.base_price=150", "backtest.commission=0",
               "strategy=sma_cross", "strategy.params.fast=10", "strategy.params.slow=40")
    m = json.loads((run / "metrics.json").read_text())
    assert "USDJPY" in m["account"]["conversion"]
    trades = pl.read_csv(run / "trades.csv")
    assert trades.height > 10
    cfg = build(SyntheticDataConfig, {"symbol": "USDJPY", "base_price": 150, "end": "2024-03-06"}, "data")
    usdjpy = bars_from_market(SyntheticSource(cfg).load()).frame
    o, c = usdjpy["open"].to_numpy(), usdjpy["close"].to_numpy()
    xb = trades["exit_bar"].to_numpy()
    at_close = trades["exit_signal"].to_numpy() == "Open"
    rate = np.where(at_close, 1.0 / c[xb], 1.0 / o[xb])
    np.testing.assert_allclose(trades["pnl"].to_numpy(), trades["pnl_quote"].to_numpy() * rate, rtol=1e-9)
    assert trades["pnl"].sum() == pytest.approx(m["backtest"]["net_profit"], rel=1e-9)
