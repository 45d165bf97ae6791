"""The Hydra app end to end: the CLI itself in subprocesses (Hydra's command line, exit
codes, run folders), whole runs in-process through the ``run_app`` fixture (tests/conftest.py)."""

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
    assert trades.columns[:11] == ["id", "side", "entry_time", "entry_price", "exit_time", "exit_price", "qty",
                                   "pnl", "pnl_quote", "entry_signal", "exit_signal"]
    assert set(trades["synthetic"].to_list()) == {True}
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
def test_file_data_with_tradingview_strategy(run_app, tv_dir):
    r = run_app("data=file", f"data.path={tv_dir / 'ohlcv.csv'}", "data.timezone=US/Eastern", "strategy=tv_rsi",
                "backtest=tradingview")
    trades = pl.read_csv(r.run_dir / "trades.csv")
    tv = pl.read_csv(tv_dir / "rsi_trades.csv")
    assert trades.height == tv.height // 2
    assert trades["entry_time"][0].startswith("2022-01-04T00:00:00")  # 19:00 -05:00 in UTC
    report = (r.run_dir / "report.html").read_text()
    assert "RSI Strategy on EURUSD 1h" in report and "SYNTHETIC" not in report
    assert json.loads((r.run_dir / "manifest.json").read_text())["status"] == "ok"


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
def test_task_dataset_is_reused_by_a_rerun(run_app, tmp_path):
    args = ("task=dataset", "+experiment=eurusd_14d", "data=synthetic", "data.end=2024-03-07")
    first = run_app(*args, run_dir=tmp_path / "a").metrics["dataset"]
    second = run_app(*args, run_dir=tmp_path / "b").metrics["dataset"]
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


# -- failed runs and run folder names (issue 15, part 6) ------------------------------------


def _only_run_dir(cwd: Path) -> Path:
    runs = [p for p in (cwd / "outputs" / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_a_config_error_leaves_a_failed_manifest_in_a_named_folder(tmp_path):
    proc = aio("backtest.qty=-1", cwd=tmp_path, check=False, env={"PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and "backtest.qty=-1.0 is out of range" in proc.stderr
    assert proc.stderr.count("out of range") == 1  # said once
    run_dir = _only_run_dir(tmp_path)
    assert run_dir.name.endswith("_sma_cross")  # the strategy names it (no experiment), never None
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["stage"] == "validate"
    assert manifest["error"]["type"] == "ConfigError" and "backtest.qty" in manifest["error"]["message"]
    assert not (run_dir / "metrics.json").exists()
    # one hardware probe (aio.hardware); a run that never loaded torch is not made to import it
    assert manifest["hardware"]["cpu_logical"] >= 1 and manifest["hardware"]["gpu_probed"] is False


def test_experiment_names_the_run_folder(tmp_path):
    aio("+experiment=eurusd_14d", "backtest.qty=-1", cwd=tmp_path, check=False, env={"PYTHONPATH": str(REPO)})
    assert _only_run_dir(tmp_path).name.endswith("_eurusd_14d")


def test_multirun_folders_are_named_and_shared_by_their_jobs(tmp_path):
    """A sweep over strategies: one folder `<time>_strategy-sweep` holding a folder per job
    (both fail on the bad quantity), never `<time>_None`."""
    aio("-m", "strategy=tv_rsi,tv_macd", "backtest.qty=-1", cwd=tmp_path, check=False, env={"PYTHONPATH": str(REPO)})
    sweeps = list((tmp_path / "outputs" / "multirun").iterdir())
    assert len(sweeps) == 1 and sweeps[0].name.endswith("_strategy-sweep"), sweeps
    for job in ("0", "1"):
        assert json.loads((sweeps[0] / job / "manifest.json").read_text())["status"] == "failed"


def test_a_user_error_in_one_sweep_job_does_not_stop_the_others(tmp_path):
    """Job 0's quantity is refused; job 1 still runs to the end; the exit status and the last
    lines say which job failed and why."""
    proc = aio("-m", "backtest.qty=-1,1000", "data.end=2024-03-06", cwd=tmp_path, check=False,
               env={"PYTHONPATH": str(REPO)})
    assert proc.returncode == 2, proc.stderr[-2000:]
    sweep = next((tmp_path / "outputs" / "multirun").iterdir())
    assert json.loads((sweep / "0" / "manifest.json").read_text())["status"] == "failed"
    assert json.loads((sweep / "1" / "manifest.json").read_text())["status"] != "failed"
    assert (sweep / "1" / "metrics.json").is_file()
    tail = proc.stderr.strip().splitlines()[-2:]
    assert tail[0] == "error: 1 job(s) of the sweep failed; the others ran:", tail
    assert tail[1].startswith("  job 0 (backtest.qty=-1") and "out of range" in tail[1], tail


def test_run_name_is_never_none():
    from aio.appconfig import run_name

    assert run_name(None, None) == "run"
    assert run_name("None", "sma_cross") == "sma_cross"
    assert run_name("eurusd 14d/x", "sma_cross") == "eurusd-14d-x"
    assert run_name(None, "tv_rsi", ["strategy=tv_rsi,tv_macd", "data=file"]) == "strategy-sweep"
    assert run_name(None, "tv_rsi", ["strategy.params.fast=5,6"]) == "tv_rsi"


@pytest.mark.slow
def test_a_stage_that_fails_writes_status_failed_with_stage_and_error(run_app, monkeypatch, tmp_path, fresh_registry):
    monkeypatch.setenv("AIO_PLUGINS_DIR", str(REPO / "tests" / "plugin_kinds"))
    fresh_registry.ensure_discovered()
    with pytest.raises(RuntimeError, match="boom"):
        run_app("task=fails_test", "data.end=2024-03-06", run_dir=tmp_path / "f")
    manifest = json.loads((tmp_path / "f" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["stage"] == "explode"
    assert manifest["error"] == {"type": "RuntimeError", "message": "boom: injected failure after the bars",
                                 "user_error": False}
    assert set(manifest["timings_s"]) == {"ingest", "bars"}  # what finished before it
    assert (tmp_path / "f" / "config.yaml").is_file() and not (tmp_path / "f" / "metrics.json").exists()
