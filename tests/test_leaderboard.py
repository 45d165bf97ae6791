"""Multirun leaderboard: job folders as Hydra writes them -> one ranked table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from aio.report import leaderboard


def _job(root: Path, num: int, overrides: list[str], metrics: dict | None) -> None:
    d = root / str(num)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))


def _opt(oos: float, direction: str = "maximize") -> dict:
    return {"optimize": {"objective": "sharpe", "direction": direction, "oos_objective": oos, "is_objective": 2.0,
                         "degradation_pct": 10.0, "dsr": 0.7, "n_trials": 50,
                         "oos": {"net_profit": oos * 100, "sharpe": oos, "trade_count": 12}},
            "backtest": {"net_profit": 1000.0 * oos, "sharpe": oos, "trade_count": 40},
            "params": {"fast": 10}, "synthetic": True}


def test_ranks_by_oos_objective_with_overrides(tmp_path):
    _job(tmp_path, 0, ["strategy=tv_rsi", "sizer=fixed"], _opt(0.4))
    _job(tmp_path, 1, ["strategy=tv_macd", "sizer=fixed"], _opt(1.3))
    _job(tmp_path, 2, ["strategy=sma_cross", "sizer=vol_target"], _opt(-0.2))
    _job(tmp_path, 10, ["strategy=sma_cross", "sizer=fixed"], None)  # a job that crashed
    paths = leaderboard.write(tmp_path)
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["job"] for r in rows] == ["1", "0", "2", "10"]
    assert rows[0]["override.strategy"] == "tv_macd" and rows[0]["score_source"] == "oos.sharpe"
    assert float(rows[0]["score"]) == 1.3
    assert rows[-1]["status"] == "failed" and rows[-1]["rank"] == ""
    data = json.loads(paths["json"].read_text())
    assert [j["rank"] for j in data["jobs"]] == [1, 2, 3, None]
    page = paths["html"].read_text()
    assert "tv_macd" in page and "SYNTHETIC" in page


def test_minimising_objective_and_fallback_metric(tmp_path):
    _job(tmp_path, 0, ["optimize.objective=max_drawdown"], _opt(500.0, "minimize"))
    _job(tmp_path, 1, ["optimize.objective=max_drawdown"], _opt(200.0, "minimize"))
    # no search in these two: ranked after, by backtest net profit
    _job(tmp_path, 2, ["optimize=none"], {"backtest": {"net_profit": 5.0}})
    _job(tmp_path, 3, ["optimize=none"], {"backtest": {"net_profit": 9.0}})
    rows = leaderboard.rank(leaderboard.collect(tmp_path))
    assert [r["job"] for r in rows] == ["1", "0", "3", "2"]
    # an explicit metric ranks everyone on it
    rows = leaderboard.rank(leaderboard.collect(tmp_path, "backtest.net_profit"))
    assert [r["job"] for r in rows] == ["0", "1", "3", "2"]  # 500000, 200000, 9, 5


def test_ranks_by_the_headline_links_reports_and_skips_failed_runs(tmp_path):
    # job 0: the evaluator's headline (OOS sharpe 0.9) outranks job 1's stitched OOS block (0.5)
    m0 = _opt(0.2)
    m0["headline"] = {"sample": "out_of_sample", "metrics": {"sharpe": 0.9, "net_profit": -10980.71,
                                                             "max_drawdown_pct": 11.4, "return_pct": -10.98},
                      "warnings": ["too few trades (12) to judge"], "params": {"fast": 10}}
    _job(tmp_path, 0, ["strategy=a"], m0)
    _job(tmp_path, 1, ["strategy=b"], _opt(0.5))
    _job(tmp_path, 2, ["strategy=c"], _opt(3.0))
    (tmp_path / "2" / "manifest.json").write_text(json.dumps({"status": "failed", "error": "ConfigError: boom"}))
    (tmp_path / "0" / "report.html").write_text("<html></html>")
    paths = leaderboard.write(tmp_path)
    jobs = json.loads(paths["json"].read_text())["jobs"]
    assert [(j["job"], j["rank"]) for j in jobs] == [("0", 1), ("1", 2), ("2", None)]
    assert jobs[0]["score"] == 0.9 and jobs[0]["warning_count"] == 1 and jobs[0]["sample"] == "out_of_sample"
    assert jobs[2]["status"] == "failed" and jobs[2]["reason"] == "ConfigError: boom"
    page = paths["html"].read_text()
    assert "<a href='0/report.html'>0</a>" in page
    # one number format: thousands separators, a real minus, percents as percents, never 1e+04
    assert "−10,980.71" in page and "11.40 %" in page and "e+" not in page
    assert "<script src='plotly.min.js'>" in page and (tmp_path / "plotly.min.js").is_file()
    assert "class='sortable'" in page
    failed = page[page.index("Failed jobs"):]
    assert "ConfigError: boom" in failed


def test_hydra_callback_and_cli(tmp_path, capsys):
    _job(tmp_path, 0, ["strategy=tv_rsi"], _opt(0.1))
    _job(tmp_path, 1, ["strategy=tv_macd"], _opt(0.2))
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    leaderboard.LeaderboardCallback().on_multirun_end(cfg)
    assert (tmp_path / "leaderboard.html").is_file()
    out_dir = tmp_path / "report"
    assert leaderboard.main([str(tmp_path), "--out", str(out_dir)]) == 0
    assert "tv_macd" in capsys.readouterr().out
    assert (out_dir / "leaderboard.csv").is_file()
    assert leaderboard.main([str(tmp_path / "missing")]) == 2
