"""The Hydra app end to end, as a user runs it (subprocesses, real components)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parent.parent


def aio(*args: str, cwd: Path | None = None, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "aio", *args], cwd=cwd or REPO, capture_output=True,
                          text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"aio {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.mark.slow
def test_experiment_on_synthetic_data_writes_every_artifact(tmp_path):
    run_dir = tmp_path / "run"
    proc = aio("+experiment=eurusd_14d", "data=synthetic", "store.location=run", f"hydra.run.dir={run_dir}")
    assert proc.stdout.strip().splitlines()[-1] == f"run_dir: {run_dir.resolve()}"
    for name in ["config.yaml", "metrics.json", "trades.csv", "equity.parquet", "strategy.pine",
                 "data_quality.json", "log.jsonl", "manifest.json", "report.html"]:
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["synthetic"] is True and "SYNTHETIC" in metrics["synthetic_note"]
    assert json.loads((run_dir / "data_quality.json").read_text())["synthetic"]
    assert "SYNTHETIC" in (run_dir / "strategy.pine").read_text()
    report = (run_dir / "report.html").read_text()
    assert "SYNTHETIC DATA" in report and "model, out of sample, next to its baselines" in report
    assert f"{metrics['backtest']['trade_count']:,.0f}" in report or str(metrics["backtest"]["trade_count"]) in report
    assert json.loads((run_dir / "manifest.json").read_text())["synthetic"] is True
    trades = pl.read_csv(run_dir / "trades.csv")
    assert trades.columns[:10] == ["id", "side", "entry_time", "entry_price", "exit_time", "exit_price", "qty",
                                   "pnl", "entry_signal", "exit_signal"]
    assert metrics["backtest"]["trade_count"] == trades.height > 0
    # costs always: commission on every fill, and spread + slippage move fills off the mid
    assert (trades["commission"] > 0).all()
    log_lines = [json.loads(ln) for ln in (run_dir / "log.jsonl").read_text().splitlines()]
    assert any(rec.get("event") == "backtest done" for rec in log_lines)
    # the preset learns the charts (walk-forward chartnet), searches the strategy, stores patterns
    assert metrics["model"]["model"] == "chartnet" and metrics["model"]["oos_rows"] > 0
    assert (run_dir / "predictions.parquet").is_file() and (run_dir / "patterns.lancedb").is_dir()
    assert (run_dir / "optimize" / "trials.csv").is_file()
    resolved = (run_dir / "config.yaml").read_text()
    assert "experiment: eurusd_14d" in resolved


@pytest.mark.slow
def test_file_data_with_tradingview_strategy(tmp_path, tv_dir):
    run_dir = tmp_path / "tv"
    aio("data=file", f"data.path={tv_dir / 'ohlcv.csv'}", "data.timezone=US/Eastern", "strategy=tv_rsi",
        "backtest=tradingview", f"hydra.run.dir={run_dir}")
    trades = pl.read_csv(run_dir / "trades.csv")
    tv = pl.read_csv(tv_dir / "rsi_trades.csv")
    assert trades.height == tv.height // 2
    assert trades["entry_time"][0].startswith("2022-01-04T00:00:00")  # 19:00 -05:00 in UTC
    report = (run_dir / "report.html").read_text()
    assert "RSI Strategy on EURUSD 1h" in report and "SYNTHETIC" not in report


@pytest.mark.slow
def test_multirun_over_strategies(tmp_path, tv_dir):
    sweep = tmp_path / "sweep"
    aio("-m", "strategy=tv_rsi,tv_macd,tv_bbands", "data=file", f"data.path={tv_dir / 'ohlcv.csv'}",
        "backtest=tradingview", f"hydra.sweep.dir={sweep}")
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 3
    counts = [pl.read_csv(j / "trades.csv").height for j in jobs]
    assert counts == [pl.read_csv(tv_dir / f).height // 2 for f in ("rsi_trades.csv", "macd_trades.csv", "bollinger_trades.csv")]


def test_cfg_job_shows_the_resolved_experiment():
    proc = aio("--cfg", "job", "+experiment=eurusd_14d")
    assert "experiment: eurusd_14d" in proc.stdout
    assert "symbol: EURUSD" in proc.stdout


def test_bad_value_names_key_and_range(tmp_path):
    proc = aio("strategy=sma_cross", "strategy.params.fast=1", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode == 2
    assert "strategy.params.fast=1 is out of range" in proc.stderr and "[2, 100]" in proc.stderr


def test_unknown_group_choice_lists_the_options(tmp_path):
    proc = aio("strategy=tv_rsii", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode != 0
    # Hydra lists the available options (the typed name alone would already contain "tv_rsi")
    assert "Available options in 'strategy'" in proc.stderr
    assert "\ttv_rsi\n" in proc.stderr and "\ttv_bbands\n" in proc.stderr


def test_unknown_plugin_name_lists_known_plugins(tmp_path):
    proc = aio("data.name=dukascopi", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode == 2
    assert "unknown data plugin 'dukascopi'" in proc.stderr and "Did you mean 'dukascopy'?" in proc.stderr


@pytest.mark.slow
def test_task_dataset_is_reused_by_a_rerun(tmp_path):
    args = ("task=dataset", "+experiment=eurusd_14d", "data=synthetic", "data.end=2024-03-07")
    aio(*args, f"hydra.run.dir={tmp_path / 'a'}")
    aio(*args, f"hydra.run.dir={tmp_path / 'b'}")
    first = json.loads((tmp_path / "a" / "metrics.json").read_text())["dataset"]
    second = json.loads((tmp_path / "b" / "metrics.json").read_text())["dataset"]
    assert first["reused"] is False and second["reused"] is True
    assert first["hash"] == second["hash"] and first["rows"] == second["rows"] > 0
    assert not (tmp_path / "b" / "trades.csv").exists()  # task=dataset stops after the dataset


def test_missing_vlm_weights_fail_before_any_work(tmp_path):
    proc = aio("+experiment=eurusd_14d_vlm", "data=synthetic", "model=hf_vlm", f"model.name_or_path={tmp_path / 'nope'}",
               f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "never falls back to another model" in proc.stderr
    assert "data loaded" not in proc.stderr  # nothing was downloaded, built or trained first


def test_plugin_shipped_config_node_is_a_group_choice(tmp_path):
    """`indicators=my_pack` with no YAML: the plugin's node is offered to Hydra, and plugins/ still loads."""
    folder = tmp_path / "my_plugins"
    folder.mkdir()
    (folder / "my_pack.py").write_text(
        "from aio.indicators import IndicatorSetConfig\n"
        "from aio.indicators.sets import IndicatorEntry\n\n"
        "def register(registry):\n"
        "    cfg = IndicatorSetConfig(name='my_pack', entries=[IndicatorEntry(alias='alma_9', fn='ALMA'),\n"
        "                                                      IndicatorEntry(alias='rsi_7', fn='RSI', params={'timeperiod': 7})])\n"
        "    registry.add('indicator_set', 'my_pack', cfg, config=cfg)\n"
    )
    run_dir = tmp_path / "run"
    proc = aio("indicators=my_pack", "data=synthetic", "data.end=2024-03-06", f"hydra.run.dir={run_dir}",
               env={"AIO_PLUGINS_DIR": str(folder)})
    assert "indicators computed" in proc.stderr and "columns=2" in proc.stderr
    assert "alias: alma_9" in (run_dir / "config.yaml").read_text()
