"""The funnel's gates against outside truth: hand-derived PBO cases and a reference CSCV,
arch's SPA behaviour (edge found, noise not, White's RC more conservative), effective
trials on matrices with a known structure, PSR/DSR against the formulas by hand."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from scipy import stats

from aio.discover.gates import (
    GateInputError,
    aggregate,
    cluster_returns,
    deflated_sharpe_from_trials,
    deflated_sharpe_ratio,
    effective_trials,
    pbo_cscv,
    probabilistic_sharpe_ratio,
    sharpe,
    spa_test,
)

# -- PBO --------------------------------------------------------------------------------


def _reference_pbo(m: np.ndarray, s: int) -> tuple[float, list[float]]:
    """CSCV written out as in the paper (section 2.2), one step per line, loops only."""
    t, n = m.shape
    size = t // s
    m = m[t - size * s:]
    subs = [m[i * size:(i + 1) * size] for i in range(s)]
    logits = []
    for c in combinations(range(s), s // 2):
        train = np.vstack([subs[i] for i in c])
        test = np.vstack([subs[i] for i in range(s) if i not in c])
        r = [train[:, j].mean() / train[:, j].std(ddof=1) for j in range(n)]
        rbar = [test[:, j].mean() / test[:, j].std(ddof=1) for j in range(n)]
        nstar = max(range(n), key=lambda j: r[j])
        rank = 1 + sum(1 for j in range(n) if rbar[j] < rbar[nstar])  # 1 = worst
        w = rank / (n + 1)
        logits.append(math.log(w / (1 - w)))
    return sum(1 for lg in logits if lg <= 0) / len(logits), logits


def test_pbo_matches_a_reference_implementation_of_the_paper():
    rng = np.random.default_rng(0)
    m = rng.normal(0, 1, (203, 7)) + rng.normal(0, 0.05, 7)  # 203 rows: the first 3 are dropped
    res = pbo_cscv(m, n_splits=8)
    ref_pbo, ref_logits = _reference_pbo(m, 8)
    assert res.n_combinations == math.comb(8, 4) == 70
    assert np.allclose(res.logits, ref_logits)
    assert res.pbo == pytest.approx(ref_pbo)


def test_pbo_is_one_when_the_in_sample_winner_always_loses_out_of_sample():
    # Hand case: two configurations, two blocks. A wins the first half, B the second.
    m = np.array([[1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, 1.0]])
    res = pbo_cscv(m, n_splits=2, metric="mean")
    # each split picks the winner of its training half, which is last (rank 1 of 2) in the
    # other: w = 1/3, logit = log(1/2)
    assert res.pbo == 1.0
    assert np.allclose(res.logits, [math.log(0.5)] * 2)
    assert res.prob_oos_loss == 1.0 and list(res.best) == [0, 1]


def test_pbo_is_zero_for_one_dominant_configuration():
    rng = np.random.default_rng(1)
    m = rng.normal(0, 1, (800, 5))
    m[:, 3] += 1.0  # best in every half, in and out of sample
    res = pbo_cscv(m, n_splits=10)
    assert res.pbo == 0.0
    assert np.allclose(res.logits, math.log(5))  # rank 5 of 5: w = 5/6
    assert (res.best == 3).all() and res.prob_oos_loss == 0.0


def test_pbo_of_identical_noise_candidates_is_one_half():
    # Under the null the IS-best's OOS rank is uniform on 1..N: P(rank <= N/2) = 1/2.
    pbos = [pbo_cscv(np.random.default_rng(s).normal(0, 1, (480, 10)), n_splits=8).pbo for s in range(30)]
    assert np.mean(pbos) == pytest.approx(0.5, abs=0.07)


def test_pbo_rejects_what_it_cannot_judge():
    with pytest.raises(GateInputError, match="even"):
        pbo_cscv(np.zeros((100, 3)), n_splits=5)
    with pytest.raises(GateInputError, match="at least 2 columns"):
        pbo_cscv(np.zeros((100, 1)))
    with pytest.raises(GateInputError, match="non-finite"):
        pbo_cscv(np.full((100, 3), np.nan))
    with pytest.raises(GateInputError, match="too few"):
        pbo_cscv(np.zeros((10, 3)), n_splits=16)


def test_aggregate_sums_blocks_and_drops_the_tail():
    r = np.arange(10.0)
    assert aggregate(r, 3).tolist() == [3.0, 12.0, 21.0]
    assert aggregate(np.ones((7, 2)), 2).shape == (3, 2)


# -- SPA / Reality Check ----------------------------------------------------------------


def _benchmarks(rng, t):
    return {"flat": np.zeros(t), "buy_and_hold": rng.normal(0, 1, t), "sma_cross": rng.normal(0, 1, t)}


def test_spa_finds_a_planted_edge_among_noise():
    for seed in range(3):
        rng = np.random.default_rng(seed)
        t = 1000
        cand = rng.normal(0, 1, (t, 20))
        cand[:, 7] += 0.25  # a strong edge (t-stat ~ 8 against flat, ~ 5.6 against a noisy benchmark)
        res = spa_test(cand, _benchmarks(rng, t), reps=300, seed=seed)
        assert res.spa_p < 0.05, res.per_benchmark
        assert res.reality_check_p < 0.05
        assert 7 in res.superior
        assert set(res.per_benchmark) == {"flat", "buy_and_hold", "sma_cross"}


def test_spa_does_not_find_an_edge_in_noise_in_most_seeds():
    ps = []
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        t = 1000
        res = spa_test(rng.normal(0, 1, (t, 20)), _benchmarks(rng, t), reps=300, seed=seed)
        ps.append(res.spa_p)
    assert sum(p > 0.05 for p in ps) >= 8, ps


def test_reality_check_is_more_conservative_and_hurt_by_poor_candidates():
    # Hansen (2005): White's RC p-value grows when poor, irrelevant models join the family;
    # the SPA p-value (consistent) is robust to them, and lower <= consistent <= upper.
    rng = np.random.default_rng(5)
    t = 1000
    good = rng.normal(0, 1, (t, 5))
    good[:, 0] += 0.05  # a moderate edge: SPA p ~ 0.01 (seed 5)
    poor = rng.normal(-0.6, 1, (t, 40))
    flat = {"flat": np.zeros(t)}
    small = spa_test(good, flat, reps=1000, seed=1)
    big = spa_test(np.hstack([good, poor]), flat, reps=1000, seed=1)
    for r in (small, big):
        assert r.pvalues["lower"] <= r.pvalues["consistent"] <= r.pvalues["upper"]
    assert big.reality_check_p > small.reality_check_p + 0.1
    assert abs(big.spa_p - small.spa_p) < 0.02 and big.spa_p < 0.05


def test_spa_overall_p_is_the_worst_benchmark():
    rng = np.random.default_rng(9)
    t = 800
    cand = rng.normal(0, 1, (t, 4))
    cand[:, 0] += 0.3
    strong_bench = cand[:, 0] + rng.normal(0, 0.1, t) + 0.05  # a benchmark as good as the edge
    res = spa_test(cand, {"flat": np.zeros(t), "strong": strong_bench}, reps=300, seed=0)
    assert res.per_benchmark["flat"]["consistent"] < 0.05
    assert res.binding == "strong" and res.spa_p == res.per_benchmark["strong"]["consistent"] > 0.05
    assert res.superior == []


def test_spa_rejects_misaligned_benchmarks():
    with pytest.raises(GateInputError, match="align"):
        spa_test(np.zeros((100, 2)), {"flat": np.zeros(99)})
    with pytest.raises(GateInputError, match="at least one benchmark"):
        spa_test(np.zeros((100, 2)), {})


# -- effective trials -----------------------------------------------------------------


def _groups(rng, t, sizes, rho):
    cols = []
    for g in sizes:
        common = rng.normal(0, 1, t)
        for _ in range(g):
            cols.append(math.sqrt(rho) * common + math.sqrt(1 - rho) * rng.normal(0, 1, t))
    return np.column_stack(cols)


def test_effective_trials_counts_groups_of_near_identical_trials():
    rng = np.random.default_rng(2)
    m = _groups(rng, 2000, [10, 10, 10], rho=0.9)  # three rules, each swept over 10 parameter sets
    c = effective_trials(m, method="cluster", threshold=0.5)
    assert c.n_trials == 30 and c.n_eff == 3 and c.estimate == 3
    assert len(set(c.labels[:10])) == 1 and len(set(c.labels)) == 3
    e = effective_trials(m, method="eigen")
    # eigenvalues of a 3-block correlation matrix: ~ 1 + 9*0.9 = 9.1 three times, 0.1 the rest
    assert e.estimate == pytest.approx((3 * 9.1 + 27 * 0.1) ** 2 / (3 * 9.1**2 + 27 * 0.1**2), rel=0.1)
    assert e.n_eff in (3, 4)


def test_effective_trials_of_independent_trials_is_their_number():
    m = np.random.default_rng(3).normal(0, 1, (3000, 25))
    assert effective_trials(m, method="cluster").n_eff == 25
    assert effective_trials(m, method="eigen").estimate == pytest.approx(25, rel=0.05)


def test_effective_trials_threshold_floor_and_flat_trials():
    rng = np.random.default_rng(4)
    pair = _groups(rng, 5000, [2], rho=0.6)
    assert effective_trials(pair, threshold=0.5).n_eff == 1  # correlation ~0.6 merges at 0.5
    assert effective_trials(pair, threshold=0.7).n_eff == 2  # but not at 0.7
    same = np.repeat(rng.normal(0, 1, (500, 1)), 8, axis=1)
    assert effective_trials(same).estimate == 1
    assert effective_trials(same, floor=5).n_eff == 5  # never below the distinct rules
    flat = np.hstack([np.zeros((500, 5)), rng.normal(0, 1, (500, 3))])
    r = effective_trials(flat)
    assert r.n_eff == 4 and len(set(r.labels[:5])) == 1  # the flat trials are one trial


# -- PSR / DSR ---------------------------------------------------------------------------


def test_psr_matches_the_formula_by_hand():
    r = np.random.default_rng(6).standard_t(5, 2000) * 0.01 + 0.001
    sr = r.mean() / r.std(ddof=1)
    g3 = stats.skew(r)
    g4 = stats.kurtosis(r, fisher=False)
    z = (sr - 0.02) * math.sqrt(len(r) - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
    assert probabilistic_sharpe_ratio(r, 0.02) == pytest.approx(stats.norm.cdf(z), rel=1e-9)


def test_dsr_with_effective_trials_of_a_parameter_sweep():
    # 60 trials = 3 rules x 20 parameter sets: deflating by 60 punishes the sweep as if it
    # were 60 independent ideas; the effective count (3) does not.
    rng = np.random.default_rng(7)
    t = 2000
    trials = _groups(rng, t, [20, 20, 20], rho=0.95) * 0.001
    best = trials[:, 0] + 0.00012
    trials[:, 0] = best
    sharpes = trials.mean(axis=0) / trials.std(axis=0, ddof=1)
    n_eff = effective_trials(trials, floor=3).n_eff
    assert n_eff == 3
    d_eff = deflated_sharpe_ratio(best, sharpes, n_eff)
    d_raw = deflated_sharpe_ratio(best, sharpes, trials.shape[1])
    assert d_eff["n_trials"] == 3 and d_eff["sr0"] < d_raw["sr0"]
    assert d_eff["dsr"] > d_raw["dsr"]
    # by hand: SR0 = sqrt(V) * ((1 - g) * Z(1 - 1/N) + g * Z(1 - 1/(N e)))
    g = 0.5772156649015329
    v = np.var(sharpes, ddof=1)
    sr0 = math.sqrt(v) * ((1 - g) * stats.norm.ppf(1 - 1 / 3) + g * stats.norm.ppf(1 - 1 / (3 * math.e)))
    assert d_eff["sr0"] == pytest.approx(sr0, rel=1e-9)
    assert d_eff["psr"] == pytest.approx(probabilistic_sharpe_ratio(best), rel=1e-12)


def test_pbo_accepts_a_metric_function():
    m = np.random.default_rng(8).normal(0, 1, (160, 6))
    a = pbo_cscv(m, n_splits=8, metric="mean")
    b = pbo_cscv(m, n_splits=8, metric=lambda x: x.mean(axis=0))
    assert np.allclose(a.logits, b.logits) and b.metric == "custom"
    with pytest.raises(GateInputError, match="metric"):
        pbo_cscv(m, n_splits=8, metric="sortino")


def test_dsr_from_trials_takes_the_spread_from_clusters():
    # a sweep of 15 near-copies of one good rule next to 15 independent noise rules: the
    # copies are one idea; counting them as 15 Sharpe ratios would widen the null.
    rng = np.random.default_rng(11)
    t = 1500
    good = rng.normal(0.08, 1, t)
    sweep = np.column_stack([good + rng.normal(0, 0.1, t) for _ in range(15)])
    noise = rng.normal(0, 1, (t, 15))
    trials = np.hstack([sweep, noise])
    labels = effective_trials(trials).labels
    assert len(set(labels[:15])) == 1 and len(set(labels)) == 16
    cr = cluster_returns(trials, labels)
    assert cr.shape == (t, 16)
    # a cluster's series is the inverse-variance mix of its members
    w = 1 / sweep.var(axis=0)
    k = labels[0]
    order = list(np.unique(labels))
    assert np.allclose(cr[:, order.index(k)], sweep @ (w / w.sum()))
    d = deflated_sharpe_from_trials(sweep[:, 0], trials, floor=2)
    assert d["n_trials"] == 16 and d["var_sharpe_from"] == "clusters"
    assert d["var_sharpe"] == pytest.approx(np.var(sharpe(cr), ddof=1))
    naive = deflated_sharpe_ratio(sweep[:, 0], sharpe(trials), 16)
    assert d["var_sharpe"] < naive["var_sharpe"] and d["dsr"] > naive["dsr"]
    assert deflated_sharpe_from_trials(sweep[:, 0], trials, method="eigen")["var_sharpe_from"] == "trials"


# -- end to end on the planted data, through the one evaluator ----------------------


@pytest.mark.slow
def test_gates_find_the_planted_rule_after_costs(tmp_path):
    """The shipped plant, the one evaluator with default costs (commission, slippage,
    spread), a family of RSI-crossing candidates: the planted rule passes SPA, PBO and
    DSR on the discovery window, and its single holdout run makes money after costs."""
    from pathlib import Path

    import yaml

    from aio.backtest.config import BacktestConfig
    from aio.backtest.evaluator import Evaluator
    from aio.bars import bars_from_market
    from aio.config import build
    from aio.data.synthetic import SyntheticDataConfig, SyntheticSource
    from aio.discover.holdout import HoldoutGuard, HoldoutReusedError, split_holdout
    from aio.discover.ledger import Ledger
    from aio.strategy import load_spec

    conf = yaml.safe_load((Path(__file__).resolve().parent.parent / "conf/data/synthetic.yaml").read_text())
    conf["plant"] = {"indicators": {"rsi": {"fn": "RSI", "inputs": {"close": "close"}, "params": {"timeperiod": 14}}},
                     "when": "crossover(rsi, 27)", "direction": "long", "drift_pips": 10.0, "horizon_bars": 20,
                     "timeframe": "1m", "lookback_bars": 1000, "repay_bars": 720}
    md = SyntheticSource(build(SyntheticDataConfig, conf, "data")).load()
    frame = bars_from_market(md, "1m").frame
    ev = Evaluator(frame, BacktestConfig(), symbol="EURUSD", timeframe="1m")
    split = split_holdout(ev.n, 20, embargo_bars=30)

    def spec(direction: str, thr: float):
        return load_spec({
            "name": "cand", "params": {"thr": thr}, "space": {"thr": {"type": "float", "low": 0, "high": 100}},
            "indicators": {"rsi": {"fn": "RSI", "inputs": {"close": "close"}, "params": {"timeperiod": 14}}},
            "rules": [{"id": "e", "when": "crossover(rsi, thr)", "direction": direction}],
            "exit": {"take_pct": 0.08, "stop_pct": 0.08},  # ~8.7 pips either way
        })

    family = [(d, thr) for d in ("long", "short") for thr in (15, 20, 25, 27, 30, 35, 40, 50, 60, 65, 70, 75)]
    period = 60
    with Ledger(tmp_path / "discover") as led:
        cols = []
        for d, thr in family:
            e = ev.run(spec(d, thr), start=0, end=split.discovery_stop, metrics=["net_profit", "trade_count"])
            r = e.returns
            r = np.pad(r, (0, split.discovery_stop - len(r)))  # ruin stops the series; nothing here is ruined
            led.record(candidate_id=f"{d}-{thr}", rule=f"entry {d}: crossover(rsi, thr)", params={"thr": thr},
                       proposer="test_family", window=split.window(), is_returns=r, metrics=e.metrics)
            cols.append(aggregate(r, period))
        a = np.column_stack(cols)
        planted = family.index(("long", 27))
        c = ev.arrays["close"][: split.discovery_stop]
        bh = aggregate(np.r_[0.0, np.diff(c)] * ev.bt.qty / ev.bt.initial_capital, period)
        spa = spa_test(a, {"flat": np.zeros(len(a)), "buy_and_hold": bh}, reps=500)
        assert spa.spa_p < 0.05 and planted in spa.superior
        assert int(np.argmax(sharpe(a))) == planted
        assert pbo_cscv(a, n_splits=16).pbo < 0.2
        dsr = led.deflated_sharpe(np.repeat(a[:, planted] / period, period), period=period)
        assert dsr["n_trials"] >= 2 and dsr["dsr"] > 0.95, dsr
        guard = HoldoutGuard(led, split)
        hold = guard.evaluate("long-27", lambda sl: ev.run(spec("long", 27), start=sl.start, end=sl.stop))
        assert hold.metrics["net_profit"] > 0 and hold.metrics["trade_count"] >= 10
        with pytest.raises(HoldoutReusedError):
            guard.evaluate("long-27", lambda sl: None)
        assert guard.result("long-27")["net_profit"] == pytest.approx(hold.metrics["net_profit"])
