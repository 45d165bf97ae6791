"""Discovery end to end through `python -m aio`: chartnet -> distill + control + library ->
funnel -> leaderboard, library rows, strategy files that run again with strategy.from, the
library listing (task=strategies). Slow (trains chartnet on 8 days of planted M1)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

PLANT = ["data=synthetic_planted", "data.end=2024-03-12", "~data.plant.indicators.cci",
         "+data.plant.indicators.sk={fn: STOCH, output: slowk}", 'data.plant.when="crossover(sk, 80)"',
         "data.plant.direction=short", "data.plant.drift_pips=8", "data.plant.horizon_bars=10",
         "data.plant.repay_bars=240"]


def aio(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "aio", *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("disc")
    out = base / "run"
    aio("+experiment=eurusd_14d", *PLANT, "seed=7", "optimize.n_trials=60", "discover.budget=800",
        f"hydra.run.dir={out}", f"store.path={base / 'lib'}")
    return base, out


def test_discovery_run_writes_leaderboard_library_and_pine(run):
    base, out = run
    m = json.loads((out / "metrics.json").read_text())
    d = m["discover"]
    f = d["funnel"]
    assert f["proposed"] >= f["parsed"] >= f["unique"] >= f["screened"] >= f["tested"] >= f["accepted"]
    assert d["proposed_by"]["distill"] > 0 and d["proposed_by"]["grammar_search"] > 0
    assert d["synthetic"] and "crossover(sk, 80)" in json.dumps(d["plant"])
    vc = d["model_vs_control"]
    assert vc["verdict"] and (vc["model"] is None or vc["model"]["proposer"] == "distill")
    rows = list(csv.reader((out / "discover" / "leaderboard.csv").open()))
    head = rows[0]
    assert head[-1] == "synthetic" and all(r[-1] == "true" for r in rows[1:])
    for col in ("rule", "proposer", "oos_net_profit", "oos_sharpe", "dsr", "pbo", "spa_p", "trades",
                "holdout_net_profit", "accepted"):
        assert col in head
    body = [dict(zip(head, r)) for r in rows[1:]]
    assert len(body) == f["proposed"]
    assert any(r["fidelity"] for r in body if r["proposer"] == "distill")
    for r in body:  # the holdout is filled exactly for accepted candidates
        assert (r["holdout_net_profit"] != "") == (r["accepted"] == "true")
    assert f["accepted"] >= 1, d["verdict"]
    # the adopted strategy is the run's Pine, and it passes the exporter's checks
    pine = (out / "strategy.pine").read_text()
    assert "Discovered by aio" in pine.split("strategy(")[0]  # the header says what this script is
    from aio.pine.check import check_files

    files = sorted((out / "discover" / "strategies").glob("*.pine"))
    assert len(files) == f["accepted"]
    reports = check_files(files + [out / "strategy.pine"])
    assert all(r.ok for r in reports), [(r.file, r.problems) for r in reports]
    # every candidate is in the library with its lineage
    from aio.discover.library import open_library, rows as lib_rows
    from aio.store.config import LanceDBStoreConfig

    lib = open_library(LanceDBStoreConfig(path=str(base / "lib")))
    got = [r for r in lib_rows(lib) if r["discover"]]
    assert len(got) == f["unique"]
    acc = [r for r in got if r["discover"]["accepted"]]
    assert len(acc) == f["accepted"]
    lin = acc[0]["discover"]
    for key in ("proposer", "teacher_model_id", "window", "rule", "gates", "ledger", "holdout"):
        assert lin.get(key) is not None, key
    assert lin["teacher_model_id"] == m["model"]["model_id"] if "model_id" in m.get("model", {}) else True


def test_library_writes_are_idempotent(run):
    base, out = run
    from aio.discover.candidate import Candidate
    from aio.discover.library import open_library, write_candidates
    from aio.store.config import LanceDBStoreConfig

    lib = open_library(LanceDBStoreConfig(path=str(base / "lib")))
    before = lib.strategies().height
    row = json.loads(lib.strategies().row(0, named=True)["metrics_json"])["discover"]
    c = Candidate(row["proposer"], {"name": row["candidate_id"]}, id=row["candidate_id"])
    spec_row = lib.strategies().row(0, named=True)
    c.spec = {**json.loads(spec_row["definition_json"]), "params": json.loads(spec_row["params_json"])}
    write_candidates(lib, [c], {})
    assert lib.strategies().height == before


def test_strategy_files_run_like_shipped_ones(run, tmp_path):
    base, out = run
    ymls = sorted((out / "discover" / "strategies").glob("*.yaml"))
    assert ymls
    y = ymls[0]
    import yaml

    spec = yaml.safe_load(y.read_text())
    pname = next(iter(spec["params"]))
    r1 = tmp_path / "from_file"
    aio(*PLANT, f"strategy.from={y}", f"hydra.run.dir={r1}", f"store.path={base / 'lib'}")
    m1 = json.loads((r1 / "metrics.json").read_text())
    assert m1["params"][pname] == spec["params"][pname]
    assert m1["backtest"]["trade_count"] > 0
    # parameters stay overridable
    sp = spec["space"][pname]
    new = sp["low"] if spec["params"][pname] != sp["low"] else sp["high"]
    r2 = tmp_path / "override"
    aio(*PLANT, f"strategy.from={y}", f"+strategy.params.{pname}={new}", f"hydra.run.dir={r2}",
        f"store.path={base / 'lib'}")
    assert json.loads((r2 / "metrics.json").read_text())["params"][pname] == new
    # from the library by id
    r3 = tmp_path / "from_lib"
    aio(*PLANT, f"strategy.from=library:{y.stem}", f"hydra.run.dir={r3}", f"store.path={base / 'lib'}")
    m3 = json.loads((r3 / "metrics.json").read_text())
    assert m3["backtest"]["net_profit"] == pytest.approx(m1["backtest"]["net_profit"])


def test_task_strategies_lists_filters_and_exports(run, tmp_path):
    base, out = run
    exp = tmp_path / "export"
    p = aio("task=strategies", f"store.path={base / 'lib'}", "discover.query.accepted=true",
            f"discover.query.export={exp}", f"hydra.run.dir={tmp_path / 'list'}")
    m = json.loads((tmp_path / "list" / "metrics.json").read_text())["strategies"]
    assert m["count"] >= 1 and all(r["accepted"] for r in m["rows"])
    assert "ACCEPTED" in p.stdout
    assert sorted(x.stem for x in exp.glob("*.yaml")) == sorted(r["id"] for r in m["rows"])


def test_accepted_strategies_round_trip_through_pine_import(run):
    """Every accepted discovered strategy: its exported .pine imports back to a strategy
    with the same trades (no refusal: every output the grammar builds on has an inverse,
    tests/test_pine_import_compound.py)."""
    import yaml

    from aio.backtest import BacktestConfig
    from aio.backtest.evaluator import Evaluator
    from aio.bars import bars_from_market
    from aio.config import build
    from aio.data.synthetic import SyntheticDataConfig, SyntheticSource
    from aio.pine.importer import import_files
    from aio.strategy import load_spec

    base, out = run
    ymls = sorted((out / "discover" / "strategies").glob("*.yaml"))
    assert ymls, "the planted run accepted nothing to round-trip"
    bars = bars_from_market(SyntheticSource(build(SyntheticDataConfig, {"end": "2024-03-08", "seed": 3},
                                                  "data")).load()).frame
    bt = BacktestConfig()
    imported = import_files([y.with_suffix(".pine") for y in ymls])  # one parser process; refusals raise
    for y, res in zip(ymls, imported):
        back = res.spec
        section = yaml.safe_load(y.read_text())
        section.pop("from", None)
        ours = Evaluator(bars, bt).run(load_spec(section), metrics=["trade_count"]).trades
        theirs = Evaluator(bars, bt).run(back, metrics=["trade_count"]).trades
        assert ours.height > 0, y.name
        assert ours.drop("entry_signal", "exit_signal").equals(theirs.drop("entry_signal", "exit_signal")), y.name
