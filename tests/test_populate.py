"""task=populate: patterns (embedding + outcome) and discoveries per window, synthetic plants
labelled with their rule, progress that survives SIGKILL without duplicates.

The kill is deterministic: ``AIO_POPULATE_FAULT=<unit>:<phase>`` makes the populate
process SIGKILL itself at that point (here: inside the second unit, after its patterns
were written and before its discoveries and its done-mark), so the resumed run must
redo a half-written unit. Outside references: outcomes by hand from the bars, the plant's
own event times (MarketData.meta), LanceDB's rows read back with pyarrow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
PLANT = {"plant": {"indicators": {"cci": {"fn": "CCI", "params": {"timeperiod": 20}}}, "when": "crossunder(cci, -100)",
                   "direction": "long", "drift_pips": 6.0, "horizon_bars": 10},
         "seed": 1, "start": "2024-03-04", "end": "2024-03-06"}
CHEAP_FUNNEL = ["discover.populate.budget=6", "discover.funnel.tune.n_trials=3", "discover.funnel.tune.top=1",
                "discover.funnel.tune.folds=2", "discover.funnel.spa_reps=100", "discover.funnel.pbo_configs=4"]


def cli(lib: Path, run_dir: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    plants = ("discover.populate.plants=[{plant: {indicators: {cci: {fn: CCI, params: {timeperiod: 20}}}, "
              "when: 'crossunder(cci, -100)', direction: long, drift_pips: 6.0, horizon_bars: 10}, seed: 1, "
              "start: '2024-03-04', end: '2024-03-06'}]")
    args = [sys.executable, "-m", "aio", "task=populate", "data.start=2024-03-04", "data.end=2024-03-08",
            "discover=funnel", f"store.path={lib}", f"hydra.run.dir={run_dir}", "discover.populate.window_bars=2500",
            plants, *CHEAP_FUNNEL]
    env = {**os.environ, "PYTHONPATH": str(REPO), "AIO_PROGRESS": "0"}
    env.pop("AIO_POPULATE_FAULT", None)
    if fault:
        env["AIO_POPULATE_FAULT"] = fault
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def library_rows(lib: Path) -> dict:
    from aio.store import PatternLibrary

    pl_lib = PatternLibrary(lib)
    pats = pl_lib.table("patterns").to_arrow().to_pylist() if pl_lib.count_patterns() else []
    strat = pl_lib.strategies().to_dicts()
    for s in strat:
        s.pop("updated_ts", None)  # the write time (changes on every upsert by design)
        s.pop("created_ts", None)
    for p in pats:
        p["vector"] = [round(float(v), 6) for v in p["vector"]]
    return {"patterns": pats, "strategies": strat}


@pytest.mark.slow
def test_populate_killed_and_resumed_equals_an_uninterrupted_run(tmp_path):
    full = cli(tmp_path / "a.lancedb", tmp_path / "run_a")
    assert full.returncode == 0, full.stderr[-3000:]
    killed = cli(tmp_path / "b.lancedb", tmp_path / "run_b1", fault="1:patterns")
    assert killed.returncode == -9, killed.stderr[-3000:]  # SIGKILL, not an exit
    state = json.loads((tmp_path / "b.lancedb" / "populate_state.json").read_text())
    assert [v["done"] for v in state.values()] == [["history:0-2500"]]
    resumed = cli(tmp_path / "b.lancedb", tmp_path / "run_b2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    m = json.loads((tmp_path / "run_b2" / "metrics.json").read_text())["populate"]
    assert m["skipped_done"] == 1 and m["units"] == 3

    a, b = library_rows(tmp_path / "a.lancedb"), library_rows(tmp_path / "b.lancedb")
    for name in ("patterns", "strategies"):
        key = "pattern_id" if name == "patterns" else "strategy_id"
        ids = [r[key] for r in b[name]]
        assert len(ids) == len(set(ids)), f"duplicate {name} rows after the resume"
        assert sorted(a[name], key=lambda r: r[key]) == sorted(b[name], key=lambda r: r[key]), name
    ma = json.loads((tmp_path / "run_a" / "metrics.json").read_text())["populate"]
    assert ma["rows"] == m["rows"] and ma["rows"]["strategies"] > 1
    # every history window's discoveries are in the library with their window and gates
    disc = [json.loads(s["metrics_json"]).get("discover") for s in a["strategies"]]
    units = {d["populate"]["unit"] for d in disc if d}
    assert units == {"history:0-2500", "history:2500-5000"}
    assert all("accepted" in d and "gates" in d for d in disc if d)
    # a second run over the same library skips everything and writes nothing new
    again = cli(tmp_path / "a.lancedb", tmp_path / "run_a2")
    assert again.returncode == 0
    assert json.loads((tmp_path / "run_a2" / "metrics.json").read_text())["populate"]["skipped_done"] == 3
    assert library_rows(tmp_path / "a.lancedb") == a


# -- in-process checks -----------------------------------------------------------------


@pytest.fixture(scope="module")
def bars():
    import yaml

    from aio.appconfig import REPO as R
    from aio.bars import TimeBars, TimeBarsConfig
    from aio.config import build
    from aio.data.synthetic import SyntheticDataConfig, SyntheticSource

    sec = yaml.safe_load((R / "conf" / "data" / "synthetic.yaml").read_text())
    sec.update(seed=5, start="2024-03-04", end="2024-03-05")
    return TimeBars(TimeBarsConfig()).build(SyntheticSource(build(SyntheticDataConfig, sec, "data")).load()).frame


def test_pattern_outcomes_match_a_hand_computation(bars):
    from aio.discover.populate import PopulateConfig, pattern_rows

    cfg = PopulateConfig(embed_bars=16, embed_dim=8, horizon_bars=5, flat_bp=0.5)
    t = pattern_rows(bars, 0, 200, cfg, "EURUSD", "1m", "r").to_pylist()
    assert len(t) == 200 - 15  # the first pattern needs 16 bars
    close, high, low = (bars.get_column(c).to_list() for c in ("close", "high", "low"))
    ts = bars.get_column("ts_init").to_list()
    for row in (t[0], t[100]):
        i = ts.index(row["ts_init"])
        fwd = close[i + 5] / close[i] - 1
        assert row["fwd_return"] == pytest.approx(fwd, rel=1e-12)
        assert row["label"] == (1 if fwd > 0.5e-4 else -1 if fwd < -0.5e-4 else 0)
        assert row["mfe"] == pytest.approx(max(high[i + 1:i + 6]) / close[i] - 1, rel=1e-12)
        assert row["mae"] == pytest.approx(min(low[i + 1:i + 6]) / close[i] - 1, rel=1e-12)
        assert row["label_end_ts"] == ts[i + 5] > row["ts_init"]
        assert np.linalg.norm(row["vector"]) == pytest.approx(1.0, rel=1e-5)


def test_embeddings_read_no_later_bar(bars):
    from aio.discover.populate import embeddings

    close = bars.get_column("close").to_numpy().astype(np.float64)
    ends = np.arange(63, 500)
    e = embeddings(close, ends, 64, 16)
    for t in (63, 200, 499):
        fut = close.copy()
        fut[t + 1:] *= 1.3
        assert np.array_equal(embeddings(fut, np.array([t]), 64, 16)[0], e[t - 63])
    past = close.copy()
    past[200 - 63] *= 1.01  # inside the window of bar 200: its embedding moves
    assert not np.array_equal(embeddings(past, np.array([200]), 64, 16)[0], e[200 - 63])


def test_plant_events_carry_the_planted_rule(tmp_path):
    from aio.config import build
    from aio.data.plant import event_mask
    from aio.discover.populate import PopulateConfig, plant_unit
    from aio.store import PatternLibrary

    lib = PatternLibrary(tmp_path / "lib.lancedb")
    cfg = build(PopulateConfig, {"plants": [PLANT], "embed_bars": 32, "embed_dim": 8}, "discover.populate")
    r = plant_unit(cfg.plants[0], cfg, lib, "1m", "plant:0")
    rows = lib.table("patterns").to_arrow().to_pylist()
    assert all(x["symbol"].startswith("SYNTHETIC-") for x in rows)
    labelled = sorted(x["ts_init"] for x in rows if x["regime"] == "plant: long when crossunder(cci, -100)")
    # the plant's own record of its events (from the generator), restricted to bars that became patterns
    import yaml

    from aio.appconfig import REPO as R
    from aio.data.synthetic import SyntheticDataConfig, SyntheticSource

    sec = yaml.safe_load((R / "conf" / "data" / "synthetic.yaml").read_text())
    sec.update(seed=1, start="2024-03-04", end="2024-03-06", plant=PLANT["plant"])
    market = SyntheticSource(build(SyntheticDataConfig, sec, "data")).load()
    ev = set(market.meta["plant"]["event_ts_init"])
    pattern_ts = {x["ts_init"] for x in rows}
    assert labelled == sorted(ev & pattern_ts) and len(labelled) >= 30 and r["events"] >= len(labelled)
    assert all(x["regime"] == "synthetic" for x in rows if x["ts_init"] not in ev)
    assert event_mask(market.meta["plant"], np.array(labelled)).all()
    s = lib.strategies().to_dicts()
    assert len(s) == 1 and json.loads(s[0]["metrics_json"])["populate"]["source"] == "plant"
    # idempotent: the same unit again writes the same keys
    plant_unit(cfg.plants[0], cfg, lib, "1m", "plant:0")
    assert lib.count_patterns() == len(rows) and lib.strategies().height == 1


def test_populate_config_errors_name_the_key():
    from aio.config import build
    from aio.discover.populate import PopulateConfig, plan_units
    from aio.errors import ConfigError

    with pytest.raises(ConfigError, match="window_bars"):
        plan_units(1000, PopulateConfig(window_bars=2000))
    with pytest.raises(ConfigError, match="discover.populate"):
        build(PopulateConfig, {"window_bars": 10}, "discover.populate")
    units = plan_units(5000, PopulateConfig(window_bars=2000, step_bars=1000))
    assert [u.key for u in units] == ["history:0-2000", "history:1000-3000", "history:2000-4000", "history:3000-5000"]


def test_a_second_populate_on_the_same_library_is_refused_and_a_dead_holder_frees_it(tmp_path):
    import subprocess

    from aio.discover.populate import Lock
    from aio.errors import ConfigError

    with Lock(tmp_path):
        with pytest.raises(ConfigError, match=r"another task=populate \(pid \d+\)"):
            Lock(tmp_path).__enter__()
    # a holder killed with SIGKILL leaves the lock file but not the lock
    code = ("import os, signal, sys; sys.path.insert(0, %r); from aio.discover.populate import Lock; "
            "l = Lock(%r).__enter__(); os.kill(os.getpid(), signal.SIGKILL)") % (str(REPO), str(tmp_path))
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    with Lock(tmp_path):
        pass
