"""Pure parts of the optimiser: deflated Sharpe, walk-forward windows, search space,
constraints, storage URLs. No backtests here (see test_optimize.py)."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from aio.errors import ConfigError
from aio.optimize.dsr import deflated_sharpe, expected_max_sharpe, probabilistic_sharpe, return_moments
from aio.optimize.space import feasible, grid, search_space, suggest
from aio.optimize.storage import parse_storage
from aio.optimize.walkforward import blocks, make_folds, Window
from aio.strategy import load_builtin
from aio.strategy.spec import ParamSpace


def test_deflated_sharpe_matches_the_papers_worked_example():
    # Bailey & Lopez de Prado (2014), section "A numerical example": annualised SR 2.5 from
    # 5 years of daily returns (T=1250), skew -3, kurtosis 10, after N=100 trials whose
    # annualised Sharpe ratios have variance 0.5 -> SR0 = 0.1132 (daily), DSR = 0.9004.
    sr = 2.5 / math.sqrt(250)
    var = 0.5 / 250
    assert expected_max_sharpe(100, var) == pytest.approx(0.1132, abs=5e-5)
    d = deflated_sharpe(sr, 1250, -3.0, 10.0, 100, var)
    assert d["dsr"] == pytest.approx(0.9004, abs=5e-4)
    # More trials raise the bar the best one has to clear.
    assert deflated_sharpe(sr, 1250, -3.0, 10.0, 1000, var)["dsr"] < d["dsr"]


def test_probabilistic_sharpe_is_normal_cdf_for_gaussian_returns():
    # skew 0, kurtosis 3: z = (SR - SR*) sqrt(T-1) / sqrt(1 + SR^2 / 2)
    sr, t = 0.1, 101
    z = sr * math.sqrt(t - 1) / math.sqrt(1 + sr * sr / 2)
    assert probabilistic_sharpe(sr, 0.0, t, 0.0, 3.0) == pytest.approx(0.5 * (1 + math.erf(z / math.sqrt(2))))


def test_return_moments_against_numpy_definitions():
    rng = np.random.default_rng(3)
    r = rng.standard_t(5, 5000) * 0.01 + 0.001
    m = return_moments(r)
    z = (r - r.mean()) / r.std()
    assert m["sr"] == pytest.approx(r.mean() / r.std(ddof=1))
    assert m["skew"] == pytest.approx(float(np.mean(z**3)))
    assert m["kurtosis"] == pytest.approx(float(np.mean(z**4)))
    assert m["kurtosis"] > 3.5  # Student-t(5) tails


def test_anchored_and_rolling_folds_tile_the_oos_span_without_overlap():
    n = 1000
    anchored = make_folds(n, 4, "anchored", 0.4)
    rolling = make_folds(n, 4, "rolling", 0.4, is_bars=300, gap_bars=5)
    for folds in (anchored, rolling):
        oos = [f.oos for f in folds]
        assert oos[0].start == n - 4 * 100 and oos[-1].end == n
        assert all(a.end == b.start for a, b in zip(oos, oos[1:]))  # contiguous
        for f in folds:
            assert f.is_.end <= f.oos.start  # IS strictly before its OOS
    assert all(f.is_.start == 0 for f in anchored)
    assert [len(f.is_) for f in rolling] == [300] * 4
    assert all(f.oos.start - f.is_.end == 5 for f in rolling)
    single = make_folds(n, 0)
    assert single[0].is_ == Window(0, n) and single[0].oos is None
    with pytest.raises(ConfigError, match="in-sample bars"):
        make_folds(100, 3, "anchored", 0.9)


def test_blocks_cover_the_window():
    bs = blocks(Window(10, 110), 3)
    assert bs[0].start == 10 and bs[-1].end == 110
    assert sum(len(b) for b in bs) == 100
    assert all(a.end == b.start for a, b in zip(bs, bs[1:]))


def test_grid_respects_constraints_and_overrides():
    spec = load_builtin("tv_macd")
    space = search_space(spec, ["fastLength", "slowlength"],
                         {"fastLength": {"low": 5, "high": 30, "step": 5}, "slowlength": {"low": 10, "high": 70, "step": 5}})
    pts = grid(space, ["fastLength < slowlength"])
    # fast in 5..30 step 5, slow in 10..70 step 5, fast < slow: 13+12+11+10+9+8
    assert len(pts) == 63
    assert all(p["fastLength"] < p["slowlength"] for p in pts)
    assert feasible({"fastLength": 5, "slowlength": 10}, ["fastLength < slowlength"])
    assert not feasible({"fastLength": 30, "slowlength": 10}, ["fastLength < slowlength"])
    with pytest.raises(ConfigError, match="not a parameter"):
        search_space(spec, ["nope"])


def test_grid_needs_a_step_for_floats():
    with pytest.raises(ConfigError, match="needs a step"):
        grid({"x": ParamSpace(type="float", low=0.0, high=1.0)})
    assert grid({"x": ParamSpace(type="float", low=0.5, high=1.0, step=0.25)}) == [{"x": 0.5}, {"x": 0.75}, {"x": 1.0}]


def test_conditional_parameters_are_only_suggested_when_active():
    space = {
        "stop_atr": ParamSpace(type="float", low=0.5, high=3.0, active_if={"use_stop": True}),
        "use_stop": ParamSpace(type="bool"),
        "length": ParamSpace(type="int", low=2, high=20, step=2),
        "ma": ParamSpace(type="categorical", choices=["sma", "ema"]),
        "lr": ParamSpace(type="float", low=1e-4, high=1e-1, log=True),
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_on = seen_off = 0
    for _ in range(40):
        t = study.ask()
        p = suggest(t, space)
        if p["use_stop"]:
            seen_on += 1
            assert 0.5 <= p["stop_atr"] <= 3.0
        else:
            seen_off += 1
            assert "stop_atr" not in p
        assert p["length"] % 2 == 0 and p["ma"] in ("sma", "ema") and 1e-4 <= p["lr"] <= 1e-1
        study.tell(t, 0.0)
    assert seen_on and seen_off
    # grid leaves inactive parameters out and does not repeat points
    pts = grid({"use_stop": space["use_stop"],
                "stop_atr": ParamSpace(type="float", low=1.0, high=2.0, step=1.0, active_if={"use_stop": True})})
    assert pts == [{"use_stop": False}, {"use_stop": True, "stop_atr": 1.0}, {"use_stop": True, "stop_atr": 2.0}]


def test_storage_urls(tmp_path):
    assert parse_storage(None).kind == "memory"
    j = parse_storage(str(tmp_path / "s.journal"))
    assert j.kind == "journal" and j.path.endswith("s.journal")
    assert parse_storage(f"journal:{tmp_path}/x.log").kind == "journal"
    s = parse_storage(f"sqlite:///{tmp_path}/sub/s.db")
    assert s.kind == "sqlite" and (tmp_path / "sub").is_dir()
    pg = parse_storage("postgresql://user:secret@db.example/optuna")
    assert pg.kind == "rdb" and "secret" not in pg.label
    with pytest.raises(ConfigError, match="not a storage"):
        parse_storage("studies.txt")
