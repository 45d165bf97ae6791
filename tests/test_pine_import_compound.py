"""Pine import of the indicators the exporter writes as an expression around a call.

STOCH exports as ``ta.sma(ta.stoch(close, high, low, k), n)`` (slowd one MA deeper),
STOCHF as ``ta.stoch(...)`` and an MA of it, TSI as ``100 * ta.tsi(...)``, ROCP as
``ta.roc(...) / 100``. The importer reads them through the same inverse export map as
every ``ta.*`` call (patterns, :func:`aio.pine.pine_ast.templates`).

The round trip covers every indicator output the discovery grammar can use (its own
block list, with nothing excluded), each in a strategy written by the grammar itself:
exported with the real exporter, imported, and traded by the Evaluator on the same
SYNTHETIC bars. The values are checked against outside references: TradingView's own
``ta.stoch(close, high, low, 20)`` (reference data), a rolling mean of it written here,
and TA-Lib's STOCH / STOCHF. All scripts go through one parser process.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import talib

from aio.backtest import BacktestConfig
from aio.discover.grammar import Atom, Genome, Grammar, GrammarConfig, Term
from aio.indicators import get_indicator
from aio.pine import export_strategy
from aio.pine.importer import translate
from aio.pine.pine_ast import parse_files
from aio.strategy import load_spec
from aio.strategy.rules import series_env
from test_pine_import import refusal, synthetic_frame, trades

BT = BacktestConfig(commission=0.01, slippage_ticks=1, qty=10_000.0)
PRICES = ("open", "high", "low", "close", "volume")


def _arrays(frame) -> dict[str, np.ndarray]:
    return {c: frame[c].to_numpy().astype(np.float64) for c in PRICES}


def grammar_specs(frame) -> dict[str, dict]:
    """One strategy per grammar block, written by the grammar (Genome -> to_spec): a level-like
    output crosses its median and 80% levels, a price-like one is crossed by the close (where that
    never trades, the grammar's lag atom x > x[3]). Directions and brackets (ATR with its guard,
    percent) alternate."""
    g = Grammar(GrammarConfig(exclude=[]), _arrays(frame))
    close = Term(g.prices[0])
    out = {}
    for i, b in enumerate(g.blocks):
        t = Term(b, g.default_length(b))
        if b.scale == "level":
            q = g.levels(t)[2]
            entry, exit_ = Atom("xup", t, level=q[4]), Atom("xdn", t, level=q[-3])
        else:
            entry, exit_ = Atom("xup", close, t), Atom("xdn", close, t)
        bracket = ("atr", "pct")[(i // 2) % 2]
        stop, take = (2.0, 3.0) if bracket == "atr" else (0.3, 0.6)
        genome = Genome(("long", "short")[i % 2], (entry,), (exit_,), bracket, stop, take)
        name = "g_" + b.label.lower().replace(".", "_")
        spec = g.to_spec(genome, name=name)
        if trades(load_spec(spec), frame, BT).height == 0:  # close > highest(close, n) never holds: a lag instead
            spec = g.to_spec(Genome(genome.direction, (Atom("rise", t, lag=3),), (), bracket, stop, take), name=name)
        out[b.label] = spec
    return out


def _ind(name: str, fn: str, params: dict, output: str | None = None) -> dict:
    d = get_indicator(fn)
    b = {"fn": fn, "inputs": {k: k for k in d.inputs}, "params": params}
    if output:
        b["output"] = output
    return b


# The compound forms with their lengths as strategy inputs, both outputs crossing each other,
# and the MA types the exporter writes besides SMA.
INPUT_SPECS = {
    "stoch_inputs": {
        "name": "stoch_inputs", "params": {"fk": 9, "sk": 4, "sd": 5, "lo": 25.0},
        "space": {"fk": {"type": "int", "low": 5, "high": 30}, "sk": {"type": "int", "low": 1, "high": 8},
                  "sd": {"type": "int", "low": 1, "high": 8}, "lo": {"type": "float", "low": 5.0, "high": 45.0}},
        "indicators": {"st": _ind("st", "STOCH", {"fastk_period": "fk", "slowk_period": "sk", "slowk_matype": 1,
                                                  "slowd_period": "sd", "slowd_matype": 0})},
        "rules": [{"id": "L", "when": "crossover(st.slowk, st.slowd) and st.slowk < 100 - lo", "action": "entry",
                   "direction": "long"},
                  {"id": "S", "when": "crossunder(st.slowk, st.slowd) and st.slowk > lo", "action": "entry",
                   "direction": "short"}],
    },
    "stochf_inputs": {
        "name": "stochf_inputs", "params": {"fk": 12, "fd": 4},
        "space": {"fk": {"type": "int", "low": 5, "high": 30}, "fd": {"type": "int", "low": 2, "high": 8}},
        "indicators": {"sf": _ind("sf", "STOCHF", {"fastk_period": "fk", "fastd_period": "fd", "fastd_matype": 2})},
        "rules": [{"id": "L", "when": "crossover(sf.fastk, sf.fastd)", "action": "entry", "direction": "long"},
                  {"id": "S", "when": "crossunder(sf.fastk, sf.fastd)", "action": "entry", "direction": "short"}],
    },
    "tsi_rocp_inputs": {
        "name": "tsi_rocp_inputs", "params": {"a": 20, "b": 9, "n": 12, "lvl": 0.001},
        "space": {"a": {"type": "int", "low": 10, "high": 40}, "b": {"type": "int", "low": 3, "high": 15},
                  "n": {"type": "int", "low": 3, "high": 30}, "lvl": {"type": "float", "low": 0.0, "high": 0.01}},
        "indicators": {"t": _ind("t", "TSI", {"firstperiod": "a", "secondperiod": "b"}),
                       "r": _ind("r", "ROCP", {"timeperiod": "n"})},
        "rules": [{"id": "L", "when": "crossover(t, 0) and r > lvl", "action": "entry", "direction": "long"},
                  {"id": "S", "when": "crossunder(t, 0) and r < -lvl", "action": "entry", "direction": "short"}],
    },
}

# Hand-written scripts as a trader writes them (TradingView's "Stochastic Slow Strategy" form).
SLOW = """//@version=6
strategy("Stochastic Slow Strategy", overlay=true)
length = input.int(20, minval=1)
OverBought = input(80)
OverSold = input(20)
smoothK = 3
smoothD = 3
k = ta.sma(ta.stoch(close, high, low, length), smoothK)
d = ta.sma(k, smoothD)
co = ta.crossover(k, d)
cu = ta.crossunder(k, d)
if (not na(k) and not na(d))
    if (co and k < OverSold)
        strategy.entry("StochLE", strategy.long, comment="StochLE")
    if (cu and k > OverBought)
        strategy.entry("StochSE", strategy.short, comment="StochSE")
"""
FAST = """//@version=6
strategy("Raw stochastic", overlay=true)
len = input.int(20, "Length", minval=2, maxval=100)
raw = ta.stoch(close, high, low, len)
if ta.crossover(raw, 20)
    strategy.entry("L", strategy.long)
if ta.crossunder(raw, 80)
    strategy.entry("S", strategy.short)
"""
EMA_SLOW = """//@version=6
strategy("EMA-smoothed stochastic", overlay=true)
len = input.int(20, "Length", minval=2, maxval=100)
sk = input.int(3, "K smoothing", minval=1, maxval=10)
sd = input.int(3, "D smoothing", minval=1, maxval=10)
k = ta.ema(ta.stoch(close, high, low, len), sk)
d = ta.sma(ta.ema(ta.stoch(close, high, low, len), sk), sd)
if ta.crossover(k, d)
    strategy.entry("L", strategy.long)
if ta.crossunder(k, d)
    strategy.entry("S", strategy.short)
"""

HEAD = '//@version=6\nstrategy("T", overlay=true)\nlen = input.int(14, "Length", minval=2, maxval=50)\n'
ENTRY = 'if ta.crossover(x, 50)\n    strategy.entry("L", strategy.long)\n'
# name -> (script, line, column, words the message must name): ta.stoch forms without an exact reading
REFUSALS = {
    "stoch_series_length": (HEAD + "x = ta.sma(ta.stoch(close, high, low, len * 2), 3)\n" + ENTRY, 4, 39,
                            "this argument of ta.stoch()"),
    "stoch_three_args": (HEAD + "x = ta.stoch(close, high, low)\n" + ENTRY, 4, 5, "ta.stoch() with these arguments"),
    "stoch_unmapped_ma": (HEAD + "x = ta.swma(ta.stoch(close, high, low, len))\n" + ENTRY, 4, 5, "ta.swma"),
    "stoch_named_length": (HEAD + "x = ta.stoch(close, high, low, length=len)\n" + ENTRY, 4, 32,
                           "ta.stoch(length=...)"),
    "bare_tsi": (HEAD + "x = ta.tsi(close, 13, 25)\n" + ENTRY, 4, 5, "ta.tsi"),
}


@pytest.fixture(scope="module")
def frame():
    return synthetic_frame()


@pytest.fixture(scope="module")
def specs(frame):
    return {**grammar_specs(frame), **INPUT_SPECS}


@pytest.fixture(scope="module")
def scripts(tmp_path_factory, specs):
    """Every script of this module parsed in one tool-venv process: name -> (path, text, tree)."""
    out = tmp_path_factory.mktemp("pine_compound")
    texts = {f"export_{n}": export_strategy(load_spec(s), backtest=BT) for n, s in specs.items()}
    texts.update(slow=SLOW, fast=FAST, ema_slow=EMA_SLOW)
    texts.update({f"refuse_{n}": v[0] for n, v in REFUSALS.items()})
    paths = {}
    for i, (n, text) in enumerate(texts.items()):
        paths[n] = out / f"s{i}.pine"
        paths[n].write_text(text)
    parsed = parse_files(list(paths.values()))
    return {n: (p, p.read_text(), d) for (n, p), d in zip(paths.items(), parsed)}


def _import(scripts, name):
    path, text, tree = scripts[name]
    return translate(text, tree, str(path))


# Exports the rule language reads as its own price fields and functions (the same values).
RULE_FORMS = {"AVGPRICE": "ohlc4", "MEDPRICE": "hl2", "TYPPRICE": "hlc3", "HIGHEST": "highest(", "MAX": "highest(",
              "LOWEST": "lowest(", "MIN": "lowest("}


def _full(binding: dict) -> tuple:
    d = get_indicator(binding["fn"])
    return binding["fn"], binding.get("output") or d.outputs[0], {**d.params, **binding.get("params", {})}


def test_every_grammar_output_is_covered(specs):
    """The round trip below covers each output the grammar can build on, the compound ones among them."""
    labels = {k for k in specs if k not in INPUT_SPECS}
    assert {"STOCH.slowk", "STOCH.slowd", "STOCHF.fastk", "STOCHF.fastd", "TSI", "ROCP"} <= labels
    assert len(labels) >= 40


def _labels():
    return [b.label for b in Grammar(GrammarConfig(exclude=[]), _arrays(synthetic_frame())).blocks] + list(INPUT_SPECS)


@pytest.mark.parametrize("label", _labels())
def test_export_then_import_gives_the_same_indicator_and_trades(scripts, specs, frame, label):
    spec = specs[label]
    res = _import(scripts, f"export_{label}")
    back = res.spec
    original = load_spec(spec)
    # the same indicator, output and parameters (inputs stay inputs)
    ours = [_full(b) for a, b in spec["indicators"].items() if a != "atr_guard"]
    theirs = [_full(b) for b in res.section["indicators"].values() if "fn" in b]
    for fn, out, params in ours:
        if fn in RULE_FORMS:  # the same series, read as the rule language's own price field or function
            assert RULE_FORMS[fn] in json.dumps(res.section), (label, res.section)
            continue
        assert any(f == fn and p == params for f, _, p in theirs), (label, theirs)
        if fn in ("STOCH", "STOCHF"):  # one expression per output: each reads back as its output
            want = set(get_indicator(fn).outputs) if label in INPUT_SPECS else {out}
            assert {o for f, o, p in theirs if f == fn and p == params} >= want, (label, theirs)
    assert back.params == original.params
    a, b = trades(original, frame, BT), trades(back, frame, BT)
    assert a.height > 0, f"{label}: the strategy does not trade on the synthetic bars"
    assert a.equals(b), f"{label}: trades differ after export + import"
    if label in INPUT_SPECS:  # and with other values of the inputs (they stay wired)
        other = {k: (v.high if v.type == "int" else v.low) for k, v in original.space.items()}
        assert trades(original, frame, BT, other).equals(trades(back, frame, BT, other))


# -- hand-written ta.stoch against outside references ------------------------------------------


@pytest.fixture(scope="module")
def osc(tv_dir):
    """TradingView's own ta.stoch(close, high, low, 20) on 200 EURUSD 1h bars (reference data)."""
    df = pd.read_csv(tv_dir / "mfi+rsi+stoch.csv")
    arrays = {k: df[c].to_numpy(np.float64) for k, c in
              (("open", "open"), ("high", "high"), ("low", "low"), ("close", "close"), ("volume", "Volume"))}
    return arrays, df["ta.stoch(close, high, low, 20)"].to_numpy(np.float64)


def _rolling_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Pine's ta.sma by hand: na until n values, then their mean (na in the window: na)."""
    out = np.full(len(x), np.nan)
    for i in range(n - 1, len(x)):
        w = x[i - n + 1:i + 1]
        out[i] = np.nan if np.isnan(w).any() else w.mean()
    return out


def _same(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    """Same na bars as the reference and the same values elsewhere."""
    assert np.array_equal(np.isnan(ours), np.isnan(ref)), (
        f"{what}: warm-up differs: ours from bar {int(np.argmax(~np.isnan(ours)))}, "
        f"reference from bar {int(np.argmax(~np.isnan(ref)))}")
    ok = ~np.isnan(ref)
    assert ok.sum() > 100, what
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=1e-10, atol=1e-9, err_msg=what)


def test_raw_ta_stoch_reads_as_stochf_fastk_with_tradingviews_values(scripts, osc):
    res = _import(scripts, "fast")
    (b,) = [b for b in res.section["indicators"].values() if "fn" in b]
    assert (b["fn"], b["output"], b["params"]["fastk_period"]) == ("STOCHF", "fastk", "len")
    assert any("fastd_period=1" in n for n in res.notes)  # the warm-up choice is said
    arrays, tv = osc
    env = series_env(res.spec, arrays)
    (alias,) = [a for a, x in res.section["indicators"].items() if "fn" in x]
    _same(env[alias], tv, "ta.stoch vs TradingView")
    h, lo, c = arrays["high"], arrays["low"], arrays["close"]
    _same(env[alias], talib.STOCHF(h, lo, c, 20, 1, 0)[0], "ta.stoch vs TA-Lib STOCHF")


def test_slow_stochastic_reads_as_stoch_slowk_with_tradingviews_values(scripts, osc):
    """TradingView's Stochastic Slow Strategy: k = ta.sma(ta.stoch(...), 3), d = ta.sma(k, 3)."""
    res = _import(scripts, "slow")
    ind = res.section["indicators"]
    k = ind["k"]
    assert (k["fn"], k["output"]) == ("STOCH", "slowk")
    assert k["params"] == {"fastk_period": "length", "slowk_period": 3, "slowk_matype": 0, "slowd_period": 1,
                           "slowd_matype": 0}
    assert ind["d"] == {"fn": "SMA", "inputs": {"close": "k"}, "params": {"timeperiod": 3}}
    arrays, tv = osc
    env = series_env(res.spec, arrays)
    k_ref = _rolling_mean(tv, 3)  # from TradingView's own ta.stoch
    _same(env["k"], k_ref, "k vs sma(TradingView's ta.stoch, 3)")
    _same(env["d"], _rolling_mean(k_ref, 3), "d vs sma(sma(TradingView's ta.stoch, 3), 3)")
    h, lo, c = arrays["high"], arrays["low"], arrays["close"]
    slowk, slowd = talib.STOCH(h, lo, c, 20, 3, 0, 3, 0)
    ok = ~np.isnan(slowk)  # TA-Lib starts slowk with slowd, 2 bars after Pine
    np.testing.assert_allclose(env["k"][ok], slowk[ok], rtol=1e-10)
    _same(env["d"], slowd, "d vs TA-Lib STOCH slowd")


def test_ema_smoothed_stochastic_with_inputs_reads_as_one_stoch(scripts, osc):
    """k and d written out in full, lengths as inputs: one STOCH binding (EMA slowk, SMA slowd)."""
    res = _import(scripts, "ema_slow")
    ind = res.section["indicators"]
    want = {"fastk_period": "len", "slowk_period": "sk", "slowk_matype": 1, "slowd_period": "sd", "slowd_matype": 0}
    assert {(b["fn"], b["output"]) for b in ind.values()} == {("STOCH", "slowk"), ("STOCH", "slowd")}
    assert all(b["params"] == want for b in ind.values())
    arrays, _ = osc
    env = series_env(res.spec, arrays)
    h, lo, c = arrays["high"], arrays["low"], arrays["close"]
    slowk, slowd = talib.STOCH(h, lo, c, 20, 3, 1, 3, 0)
    by_out = {b["output"]: a for a, b in ind.items()}
    _same(env[by_out["slowk"]], slowk, "EMA slowk vs TA-Lib STOCH")
    _same(env[by_out["slowd"]], slowd, "slowd vs TA-Lib STOCH")


@pytest.mark.parametrize("case", list(REFUSALS))
def test_stoch_forms_without_an_exact_reading_are_refused(scripts, case):
    _, line, col, construct = REFUSALS[case]
    err = refusal(lambda: _import(scripts, f"refuse_{case}"), line, col, construct)
    if case == "bare_tsi":
        assert "100 * ta.tsi(" in str(err)


def test_compound_imports_do_not_look_ahead(scripts, frame):
    """STOCH/TSI/ROCP read back from Pine decide the same up to bar T whatever comes after it."""
    import polars as pl

    from aio.backtest.evaluator import Evaluator

    short = frame.head(3000)
    t = 2000
    rng = np.random.default_rng(5)
    future = short.with_columns(*[
        pl.concat([short[c][: t + 1], pl.Series(short[c][t + 1:].to_numpy() * (1 + rng.normal(0, 0.01, 3000 - t - 1)))])
        for c in ("open", "high", "low", "close")
    ])
    for name in ("export_stoch_inputs", "export_stochf_inputs", "export_tsi_rocp_inputs", "slow"):
        spec = _import(scripts, name).spec
        a = Evaluator(short, BT, symbol="EURUSD").signals(spec)
        b = Evaluator(future, BT, symbol="EURUSD").signals(spec)
        for oa, ob in zip(a.orders, b.orders):
            assert np.array_equal(oa.when[: t + 1], ob.when[: t + 1]), (name, oa.id)
