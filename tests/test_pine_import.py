"""Pine import: TradingView scripts -> aio strategies.

The truth is external: TradingView's own trade lists for its built-in RSI, MACD and
Bollinger Bands strategies (pasted as TradingView ships them, tests/data/pine/), and for
every shipped strategy the trades of the original, exported and re-imported. Every
refused construct is named with its line and column. pynescript parses in its tool venv
(created on first use, as for the export checks); all scripts go through one parser
process, whose first parse costs seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from aio.backtest import BacktestConfig
from aio.backtest.evaluator import Evaluator
from aio.pine import export_strategy
from aio.pine.importer import PineImportError, import_files, translate
from aio.pine.pine_ast import parse_files
from aio.strategy import CONF_DIR, load_builtin, load_spec

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "pine"
TV_SCRIPTS = {"rsi_strategy": "rsi_trades.csv", "macd_strategy": "macd_trades.csv",
              "bollinger_bands_strategy": "bollinger_trades.csv"}
SHIPPED = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))
EXPORTABLE = [n for n in SHIPPED if not load_builtin(n).uses_model()]


def _backtest_choice(name: str) -> BacktestConfig:
    """conf/backtest/NAME.yaml over its defaults, as Hydra composes it (backtest=tradingview)."""
    from aio.config import build

    node = yaml.safe_load((REPO / "conf" / "backtest" / f"{name}.yaml").read_text())
    merged: dict = {}
    for d in node.pop("defaults", []):
        if d != "_self_":
            merged.update(yaml.safe_load((REPO / "conf" / "backtest" / f"{d}.yaml").read_text()))
    merged.update(node)
    return build(BacktestConfig, merged, "backtest")


TV_BT = _backtest_choice("tradingview")

HEAD = '//@version=6\nstrategy("T", overlay=true)\nlen = input.int(14, "Length", minval=2, maxval=50)\n'
ENTRY = 'if ta.crossover(close, ta.sma(close, len))\n    strategy.entry("L", strategy.long)\n'

# name -> (script, line, column, words the message must name)
REFUSALS = {
    "request_security": (HEAD + 'htf = request.security(syminfo.tickerid, "D", close)\n' + ENTRY,
                         4, 7, "request.security"),
    "for_loop": (HEAD + "s = 0.0\nfor i = 0 to 9\n    s := s + close[i]\n" + ENTRY, 5, 1, "for loop"),
    "while_loop": (HEAD + "i = 0\nwhile i < 3\n    i := i + 1\n" + ENTRY, 5, 1, "while loop"),
    "array": (HEAD + "a = array.new_float(10, 0.0)\n" + ENTRY, 4, 5, "array.new_float"),
    "varip": (HEAD + "varip int ticks = 0\n" + ENTRY, 4, 1, "varip"),
    "user_function": (HEAD + "f(x) =>\n    y = x * 2\n    y + 1\nv = f(close)\n" + ENTRY, 4, 1,
                      "user function f()"),
    "reassignment": (HEAD + "var float level = 1.0\nlevel := close\n" + ENTRY, 5, 1, "reassignment level :="),
    "var_state": (HEAD + "var float first = close\n" + ENTRY, 4, 1, "var with a non-constant initial value"),
    "var_na_state": (HEAD + "var float d = na\nif close > d\n    strategy.entry(\"L\", strategy.long)\n", 5, 12,
                     "the var 'd'"),
    "ternary": (HEAD + "m = close > open ? close : open\n" + ENTRY, 4, 5, "?: operator"),
    "switch": (HEAD + 'm = switch len\n    1 => close\n    => open\n' + ENTRY, 4, 5, "switch"),
    "unmapped_ta": (HEAD + "[st, dir] = ta.supertrend(3, 10)\n" + ENTRY, 4, 13, "ta.supertrend"),
    "unmapped_ta_value": (HEAD + "a = ta.swma(close)\n" + ENTRY, 4, 5, "ta.swma"),
    "trailing_exit": (HEAD + ENTRY + 'strategy.exit("X", "L", trail_points=50, trail_offset=10)\n', 6, 25,
                      "strategy.exit(trail_points=...)"),
    "cancel_elsewhere": (HEAD + ENTRY + 'if close < open\n    strategy.cancel("L")\n', 7, 5, "strategy.cancel here"),
    "exit_in_if": (HEAD + ENTRY + 'if close > open\n    strategy.exit("X", "L", stop=low)\n', 7, 5,
                   "strategy.exit inside an if block"),
    "bar_index": (HEAD + "if bar_index > 100\n    strategy.entry(\"L\", strategy.long)\n", 4, 4,
                  "built-in variable bar_index"),
    "partial_close": (HEAD + ENTRY + 'if close < open\n    strategy.close("L", qty_percent=50)\n', 7, 25,
                      "strategy.close(qty_percent=...)"),
    "partial_side_close": (HEAD + ENTRY + 'if close > high[1]\n    strategy.entry("L2", strategy.long)\n'
                           'if close < open\n    strategy.close("L", comment="Out")\n', 9, 5,
                           "strategy.close of part of the long entries"),
    "when_argument": (HEAD + 'strategy.entry("L", strategy.long, when=close > open)\n', 4, 36,
                      "strategy.entry(when=...)"),
    "version5": (HEAD.replace("version=6", "version=5") + ENTRY, 1, 1, "//@version"),
    "indicator_script": ('//@version=6\nindicator("I")\nplot(ta.sma(close, 10))\n', 2, 1, "indicator()"),
    "syntax_error": (HEAD + "x = (close +\nif\n" + ENTRY, 5, 1, "syntax"),
}

# Everything the subset promises, in one script a trader might write.
KITCHEN_SINK = """//@version=6
// A hand-written strategy using every supported form.
strategy("Kitchen Sink", shorttitle="KS", overlay=true,
     initial_capital=50000, pyramiding=0)

fastLen = input.int(9, "Fast", 2, 50)               // positional minval, maxval
slowLen = input.int(defval=21, title="Slow", minval=5, maxval=100, step=1)
stopMult = input.float(1.5, "Stop x range", minval=0.5, maxval=4.0, step=0.25)
useFilter = input.bool(true, "Trend filter")
src = input.source(close, "Source")

var float offset = 0.0002
spread(a, b) => a - b

fast = ta.ema(src, fastLen)
slow = ta.sma(src, slowLen)
gap = spread(fast, slow)
rng = ta.atr(14)
trendUp = close > ta.sma(close, 100) or not useFilter
longCond = ta.crossover(fast, slow) and
     trendUp
shortCond = ta.crossunder(fast, slow) and gap[1] > -1

if longCond
    strategy.entry("Long", strategy.long, stop=high + offset, oca_name="Entries", oca_type=strategy.oca.cancel)
else
    strategy.cancel("Long")
if shortCond
    strategy.entry("Short", strategy.short, comment="Short")
else if close[1] > slow and close < slow
    strategy.close("Long", comment="LongOut")

strategy.exit("Stops", "Long", stop=low[1] - stopMult * rng, limit=high + 2 * stopMult * rng)
barTint = close > open ? color.new(color.green, 80) : na
p1 = plot(fast, "fast", color=color.blue)
bgcolor(longCond ? color.new(color.green, 90) : na)
"""

# The same strategy written by hand in aio's YAML: the reference for the kitchen sink's trades.
KITCHEN_SINK_YAML = """
name: ks_by_hand
params: {fastLen: 9, slowLen: 21, stopMult: 1.5, useFilter: true}
space:
  fastLen: {type: int, low: 2, high: 50}
  slowLen: {type: int, low: 5, high: 100}
  stopMult: {type: float, low: 0.5, high: 4.0, step: 0.25}
  useFilter: {type: bool}
indicators:
  f: {fn: EMA, inputs: {close: close}, params: {timeperiod: fastLen}}
  s: {fn: SMA, inputs: {close: close}, params: {timeperiod: slowLen}}
  trend: {fn: SMA, inputs: {close: close}, params: {timeperiod: 100}}
  atr: {fn: ATR_TV, params: {timeperiod: 14}}
  g: {expr: "f - s"}
rules:
  - {id: Long, when: "crossover(f, s) and (close > trend or not useFilter)", action: entry, direction: long,
     type: stop, price: "high + 0.0002", cancel_when_false: true, oca: Entries}
  - {id: Short, when: "crossunder(f, s) and g[1] > -1", action: entry, direction: short}
  - {id: LongOut, when: "not (crossunder(f, s) and g[1] > -1) and close[1] > s and close < s",
     action: close, direction: long}
exit:
  stop_long: "low[1] - stopMult * atr"
  take_long: "high + 2 * stopMult * atr"
  id: Stops
"""


def synthetic_frame(n: int = 6000, seed: int = 7) -> pl.DataFrame:
    """SYNTHETIC: a seeded random walk of 1h bars with trending regimes (BAR_SCHEMA)."""
    rng = np.random.default_rng(seed)
    drift = np.repeat(rng.normal(0, 4e-4, n // 150 + 1), 150)[:n]
    close = 1.10 * np.exp(np.cumsum(drift + rng.normal(0, 1.2e-3, n)))
    open_ = np.concatenate([[close[0]], close[:-1]]) * np.exp(rng.normal(0, 2e-4, n))
    wick = np.abs(rng.normal(0, 6e-4, n))
    ts = 1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 3_600_000_000_000
    return pl.DataFrame({
        "ts_event": ts, "ts_init": ts + 3_600_000_000_000, "open": open_,
        "high": np.maximum(open_, close) + wick, "low": np.minimum(open_, close) - wick, "close": close,
        "volume": np.full(n, 100.0), "ticks": np.full(n, 60, dtype=np.int64), "spread_mean": np.full(n, 1e-5),
    })


def trades(spec, frame: pl.DataFrame, bt: BacktestConfig = TV_BT, params=None) -> pl.DataFrame:
    """The trades of one strategy through the one evaluator (broker invariants checked)."""
    return Evaluator(frame, bt, symbol="EURUSD").run(spec, params, metrics=["trade_count"]).trades


def _bars_frame(bars) -> pl.DataFrame:
    return bars.frame if hasattr(bars, "frame") else bars


# A spec with close rules and per-bar exit levels, so the round trip covers them too.
EXITS_SPEC = {
    "name": "exits_demo", "title": "Exits demo",
    "params": {"n": 20, "k": 1.5},
    "space": {"n": {"type": "int", "low": 5, "high": 60}, "k": {"type": "float", "low": 0.5, "high": 3.0}},
    "indicators": {"m": {"fn": "SMA", "inputs": {"close": "close"}, "params": {"timeperiod": "n"}},
                   "hh": {"fn": "HIGHEST", "inputs": {"close": "high"}, "params": {"timeperiod": "n"}},
                   "sd": {"fn": "STDDEV", "inputs": {"close": "close"}, "params": {"timeperiod": "n", "nbdev": 1}}},
    "rules": [
        {"id": "Up", "when": "crossover(close, m) and close > close[1]", "action": "entry", "direction": "long"},
        {"id": "Dn", "when": "crossunder(close, m)", "action": "entry", "direction": "short",
         "type": "limit", "price": "close + k * sd"},
        {"id": "Flat", "when": "abs(close - m) < 0.1 * sd", "action": "close", "direction": "both"},
    ],
    "exit": {"stop_long": "m - k * sd", "take_long": "hh + sd", "stop_short": "m + 2 * k * sd"},
}


# Distance exits fixed at the entry decision (ATR multiples, percent of the close).
ATR_EXITS_SPEC = {
    "name": "atr_exits", "params": {"fast": 8, "slow": 30, "sl": 2.0, "atr_n": 10},
    "space": {"fast": {"type": "int", "low": 2, "high": 20}, "slow": {"type": "int", "low": 21, "high": 80},
              "sl": {"type": "float", "low": 0.5, "high": 5.0, "step": 0.5}, "atr_n": {"type": "int", "low": 5, "high": 30}},
    "indicators": {"f": {"fn": "EMA", "inputs": {"close": "close"}, "params": {"timeperiod": "fast"}},
                   "s": {"fn": "EMA", "inputs": {"close": "close"}, "params": {"timeperiod": "slow"}}},
    "rules": [{"id": "L", "when": "crossover(f, s)", "action": "entry", "direction": "long"},
              {"id": "S", "when": "crossunder(f, s)", "action": "entry", "direction": "short"}],
    "exit": {"stop_atr": "sl", "take_atr": 3.5, "atr_length": "atr_n", "id": "Bracket"},
}
PCT_EXITS_SPEC = {**ATR_EXITS_SPEC, "name": "pct_exits", "params": {"fast": 8, "slow": 30},
                  "space": {k: v for k, v in ATR_EXITS_SPEC["space"].items() if k in ("fast", "slow")},
                  "exit": {"stop_pct": 0.4, "take_pct": 0.9}}
EXTRA_SPECS = {"exits_demo": EXITS_SPEC, "atr_exits": ATR_EXITS_SPEC, "pct_exits": PCT_EXITS_SPEC}


@pytest.fixture(scope="module")
def scripts(tmp_path_factory):
    """Every script of this module parsed in one tool-venv process: name -> (path, text, tree)."""
    out = tmp_path_factory.mktemp("pine")
    paths: dict[str, Path] = {n: DATA / f"{n}.pine" for n in [*TV_SCRIPTS, "new_strategy_template"]}
    for n, (text, *_rest) in REFUSALS.items():
        paths[f"refuse_{n}"] = out / f"refuse_{n}.pine"
        paths[f"refuse_{n}"].write_text(text)
    paths["kitchen_sink"] = out / "kitchen_sink.pine"
    paths["kitchen_sink"].write_text(KITCHEN_SINK)
    bt = BacktestConfig(commission=0.01, slippage_ticks=2)
    for n in EXPORTABLE:
        paths[f"export_{n}"] = out / f"{n}.pine"
        paths[f"export_{n}"].write_text(export_strategy(load_builtin(n), backtest=bt))
    for n, spec in EXTRA_SPECS.items():
        paths[f"export_{n}"] = out / f"{n}.pine"
        paths[f"export_{n}"].write_text(export_strategy(load_spec(spec), backtest=bt))
    names = list(paths)
    parsed = parse_files([paths[n] for n in names])
    return {n: (paths[n], paths[n].read_text(), d) for n, d in zip(names, parsed)}


def _import(scripts, name, as_name=None):
    path, text, tree = scripts[name]
    return translate(text, tree, str(path), as_name)


# -- TradingView's built-ins ---------------------------------------------------------------


@pytest.mark.parametrize("script", list(TV_SCRIPTS))
def test_tradingview_builtin_reproduces_tradingviews_trade_list(scripts, tv_bars, tv_dir, script):
    from aio.backtest.tradingview import compare_trades, load_tv_trades

    res = _import(scripts, script)
    assert res.section["pine"]["origin"].startswith("pine_import of ")
    result = Evaluator(tv_bars.frame, TV_BT, symbol="EURUSD").run(res.spec, metrics=["trade_count"]).result
    theirs = load_tv_trades(tv_dir / TV_SCRIPTS[script])
    assert result.trades.height == theirs.height > 100
    assert compare_trades(result, theirs) == []


def test_tradingview_builtins_translate_to_the_shipped_definitions(scripts):
    """The pasted scripts read as the hand-written tv_* strategies (names, orders, OCA, cancel)."""
    rsi = _import(scripts, "rsi_strategy").section
    assert rsi["params"] == {"length": 14, "overSold": 30, "overBought": 70}
    assert rsi["indicators"] == {"vrsi": {"fn": "RSI", "inputs": {"close": "close"}, "params": {"timeperiod": "length"}}}
    assert [r["when"] for r in rsi["rules"]] == ["not na(vrsi) and crossover(vrsi, overSold)",
                                                "not na(vrsi) and crossunder(vrsi, overBought)"]
    bb = _import(scripts, "bollinger_bands_strategy").section
    le = bb["rules"][0]
    assert (le["id"], le["type"], le["price"], le["oca"], le["cancel_when_false"]) == \
        ("BBandLE", "stop", "lower", "BollingerBands", True)
    assert bb["space"]["mult"] == {"type": "float", "low": 0.001, "high": 50.0}
    assert bb["indicators"]["dev_stdev"] == {"fn": "STDDEV", "inputs": {"close": "close"},
                                             "params": {"timeperiod": "length", "nbdev": 1.0}}
    macd = _import(scripts, "macd_strategy").section
    assert macd["indicators"]["aMACD"] == {"fn": "EMA", "inputs": {"close": "MACD"}, "params": {"timeperiod": "MACDLength"}}


def test_the_inverse_map_covers_the_export_map():
    """Every indicator the exporter writes reads back, also those written as an expression around a
    call (ta.sma(ta.stoch(...)), 100 * ta.tsi(...), ta.roc(...) / 100), and every output of each."""
    from aio.indicators import builtin_indicators, get_indicator
    from aio.pine.pine_ast import templates

    covered = {t.indicator for lst in templates().values() for t in lst}
    exported = {n for n, d in builtin_indicators().items() if d.pine is not None}
    assert exported - covered == set()
    outputs = {(t.indicator, t.output) for lst in templates().values() for t in lst if t.output}
    for name in ("STOCH", "STOCHF"):
        assert {o for i, o in outputs if i == name} == set(get_indicator(name).outputs)
    assert templates()["ta.macd"][0].indicator == "MACD_TV" and templates()["ta.atr"][0].indicator == "ATR_TV"
    stdev = templates()["ta.stdev"][0]
    assert stdev.indicator == "STDDEV" and dict(stdev.fixed) == {"nbdev": 1.0}
    bb = templates()["ta.bb"][0]
    assert [s.names for s in bb.slots] == [("close",), ("timeperiod",), ("nbdevup", "nbdevdn")]


def test_tradingviews_new_strategy_template_is_the_sma_cross(scripts):
    """TradingView's "new strategy" template (SMA 14/28 cross) trades like sma_cross(14, 28)."""
    res = _import(scripts, "new_strategy_template")
    assert [r["id"] for r in res.section["rules"]] == ["My_Long_Entry_Id", "My_Short_Entry_Id"]
    assert any("has no inputs" in n for n in res.notes) and any("'My Long Entry Id'" in n for n in res.notes)
    assert len(res.section["indicators"]) == 2  # the same ta.sma calls in both conditions are one series each
    frame = synthetic_frame()
    ours = trades(res.spec, frame)
    ref = trades(load_builtin("sma_cross"), frame, params={"fast": 14, "slow": 28})
    assert ours.height > 20
    assert ours.drop("entry_signal", "exit_signal").equals(ref.drop("entry_signal", "exit_signal"))
    assert set(ours["entry_signal"]) == {"My_Long_Entry_Id", "My_Short_Entry_Id"}


# -- round trip --------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXPORTABLE + list(EXTRA_SPECS))
def test_export_then_import_gives_the_same_trades(scripts, tv_bars, name):
    original = load_spec(EXTRA_SPECS[name]) if name in EXTRA_SPECS else load_builtin(name)
    back = _import(scripts, f"export_{name}", name).spec
    assert back.params == original.params
    assert {k: (v.type, v.low, v.high) for k, v in back.space.items()} == \
        {k: (v.type, v.low, v.high) for k, v in original.space.items()}
    bt = BacktestConfig(commission=0.01, slippage_ticks=1, qty=10_000.0)
    for frame in (_bars_frame(tv_bars), synthetic_frame()):
        ours, theirs = trades(original, frame, bt), trades(back, frame, bt)
        assert ours.height > 10
        assert ours.equals(theirs), f"{name}: trades differ after export + import"
    # and with other parameter values than the defaults (the inputs stay wired)
    other = {k: (v.high if v.type == "int" else v.low) for k, v in original.space.items()}
    frame = synthetic_frame()
    assert trades(original, frame, bt, other).equals(trades(back, frame, bt, other))


def test_exported_levels_closes_and_limits_come_back(scripts):
    sec = _import(scripts, "export_exits_demo").section
    assert sec["exit"]["stop_long"] == "m - k * sd" and sec["exit"]["stop_short"] == "m + 2 * k * sd"
    flat = [r for r in sec["rules"] if r["id"] == "Flat"][0]
    assert flat["action"] == "close" and flat["direction"] == "both"
    dn = [r for r in sec["rules"] if r["id"] == "Dn"][0]
    assert dn["type"] == "limit" and dn["price"] == "close + k * sd"


def test_distance_exits_come_back_as_distances(scripts):
    atr = _import(scripts, "export_atr_exits").section["exit"]
    assert atr == {"stop_atr": "sl", "take_atr": 3.5, "atr_length": "atr_n", "id": "Bracket"}
    pct = _import(scripts, "export_pct_exits").section["exit"]
    assert pct == {"stop_pct": 0.4, "take_pct": 0.9, "id": "Exit"}


# -- the subset ----------------------------------------------------------------------------


def test_kitchen_sink_trades_like_the_same_strategy_written_by_hand(scripts):
    res = _import(scripts, "kitchen_sink")
    sec = res.section
    assert sec["title"] == "Kitchen Sink" and sec["pine"]["shorttitle"] == "KS"
    assert sec["space"]["fastLen"] == {"type": "int", "low": 2, "high": 50, "title": "Fast"}
    assert sec["space"]["slowLen"] == {"type": "int", "low": 5, "high": 100, "title": "Slow"}
    assert sec["space"]["stopMult"]["step"] == 0.25 and sec["space"]["useFilter"]["type"] == "bool"
    assert res.settings == {"pyramiding": 0, "initial_capital": 50000}
    assert any("source input 'src' is fixed to close" in n for n in res.notes)
    long_rule = [r for r in sec["rules"] if r["id"] == "Long"][0]
    assert long_rule["price"] == "high + 0.0002" and long_rule["cancel_when_false"] and long_rule["oca"] == "Entries"
    by_hand = load_spec(yaml.safe_load(KITCHEN_SINK_YAML))
    bt = BacktestConfig(commission=0.01, slippage_ticks=1, qty=10_000.0)
    frame = synthetic_frame()
    ours, ref = trades(res.spec, frame, bt), trades(by_hand, frame, bt)
    assert ours.height > 20 and set(ours["exit_signal"].unique()) >= {"Stops", "LongOut"}
    assert ours.drop("entry_signal", "exit_signal").equals(ref.drop("entry_signal", "exit_signal"))
    assert ours["entry_signal"].equals(ref["entry_signal"]) and ours["exit_signal"].equals(ref["exit_signal"])


def test_imported_strategies_do_not_look_ahead(scripts):
    """Decisions up to bar T (orders, prices, exit levels and distances) ignore a rewritten future."""
    frame = synthetic_frame(3000)
    t = 2000
    rng = np.random.default_rng(3)
    future = frame.with_columns(*[
        pl.concat([frame[c][: t + 1], pl.Series(frame[c][t + 1:].to_numpy() * (1 + rng.normal(0, 0.01, 3000 - t - 1)))])
        for c in ("open", "high", "low", "close")
    ])
    for name in ("kitchen_sink", "export_atr_exits", "bollinger_bands_strategy"):
        spec = _import(scripts, name).spec
        a = Evaluator(frame, TV_BT, symbol="EURUSD").signals(spec)
        b = Evaluator(future, TV_BT, symbol="EURUSD").signals(spec)
        assert not np.array_equal(frame["close"].to_numpy(), future["close"].to_numpy())
        for oa, ob in zip(a.orders, b.orders):
            assert np.array_equal(oa.when[: t + 1], ob.when[: t + 1]), (name, oa.id)
            if oa.price is not None:
                np.testing.assert_array_equal(oa.price[: t + 1], ob.price[: t + 1])
        if a.brackets is not None:
            for k in ("stop_long", "limit_long", "stop_short", "limit_short", "stop_dist", "take_dist"):
                x, y = getattr(a.brackets, k), getattr(b.brackets, k)
                if x is not None:
                    np.testing.assert_array_equal(x[: t + 1], y[: t + 1], err_msg=f"{name} {k}")


def refusal(import_one, line: int, col: int, construct: str, located: bool = True) -> PineImportError:
    """The importer's refusal of one script: it names the line, the column and the construct."""
    with pytest.raises(PineImportError) as info:
        import_one()
    err = info.value
    assert (err.line, err.col) == (line, col), str(err)
    assert construct in err.construct or construct in str(err), str(err)
    assert f":{line}:{col}:" in str(err) or not located
    return err


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusal_names_line_column_and_construct(scripts, case):
    _, line, col, construct = REFUSALS[case]
    err = refusal(lambda: _import(scripts, f"refuse_{case}"), line, col, construct, located=case != "version5")
    if err.col and case != "version5":
        # the message shows the line and a caret under the column
        shown, caret = str(err).splitlines()[-2:]
        assert caret.index("^") - 2 == col - 1


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(PineImportError, match="no such file"):
        import_files([tmp_path / "nope.pine"])


# -- the task, the library and re-tuning ----------------------------------------------------------


def aio(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "aio", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, f"aio {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_reexport_carries_the_origin_and_reimports_to_the_same_rules(scripts, tmp_path):
    res = _import(scripts, "bollinger_bands_strategy")
    text = export_strategy(res.spec, params={"length": 30, "mult": 2.5})
    origin = [ln for ln in text.splitlines() if ln.startswith("// Origin:")]
    assert origin == [f"// Origin: {res.section['pine']['origin']}"]
    assert 'length = input.int(30, "length", minval=1, maxval=80)' in text
    p = tmp_path / "again.pine"
    p.write_text(text)
    again = import_files([p], ["bollinger_bands_strategy"])[0].section
    assert again["rules"] == res.section["rules"] and again["params"] == {"length": 30, "mult": 2.5}


def test_import_goes_to_the_strategy_library_once(scripts, tmp_path):
    from aio.config import build
    from aio.pine.importer import add_to_library
    from aio.store import PatternLibrary
    from aio.store.config import LanceDBStoreConfig

    cfg = build(LanceDBStoreConfig, {"path": str(tmp_path / "lib.lancedb")}, "store")
    res = _import(scripts, "macd_strategy")
    first = add_to_library(res, cfg)
    again = add_to_library(_import(scripts, "macd_strategy"), cfg)  # the same script imported twice
    assert first["strategy_id"] == again["strategy_id"] and first["source"] == "pine_import"
    lib = PatternLibrary.from_config(cfg)
    assert lib.strategies().height == 1
    rec = lib.get_strategy(first["strategy_id"])
    assert rec.metrics["source"] == "pine_import" and rec.metrics["pine_import"]["sha256"] == res.sha256
    stored = load_spec({**rec.definition, "params": rec.params})  # the row is a complete strategy
    frame = synthetic_frame()
    assert trades(stored, frame).equals(trades(res.spec, frame))


@pytest.mark.slow
def test_import_task_then_walk_forward_retune_and_reexport(tmp_path):
    """The CLI as a user runs it: import, then the strategy YAML re-tuned walk-forward and re-exported."""
    run1 = tmp_path / "import"
    script = tmp_path / "my_strategy.pine"
    shutil.copy(DATA / "macd_strategy.pine", script)
    proc = aio("task=import_pine", f"pine.path={script}", "store.location=run", f"hydra.run.dir={run1}", cwd=tmp_path)
    assert proc.stdout.strip().splitlines()[-1] == f"run_dir: {run1.resolve()}"
    out = run1 / "strategies" / "my_strategy.yaml"
    sec = yaml.safe_load(out.read_text())
    assert sec["name"] == "my_strategy" and sec["pine"]["origin"].startswith("pine_import of my_strategy.pine")
    assert "source pine_import" in out.read_text().splitlines()[0]
    metrics = json.loads((run1 / "metrics.json").read_text())
    assert metrics["pine_import"]["rules"] == ["MacdLE", "MacdSE"] and metrics["pine_import"]["source"] == "pine_import"
    lib = metrics["pine_import"]["library"]
    assert lib["added"] and lib["library"] == str(run1 / "patterns.lancedb")
    # re-tune: the YAML as a strategy choice (a search-path folder with strategy/<name>.yaml)
    lib = tmp_path / "lib" / "strategy"
    lib.mkdir(parents=True)
    shutil.copy(out, lib / "my_strategy.yaml")
    run2 = tmp_path / "retune"
    aio("task=optimize", "strategy=my_strategy", f"hydra.searchpath=[file://{lib.parent}]", "data=synthetic",
        "data.end=2024-03-08", "bars.timeframe=15m", "optimize=random", "optimize.n_trials=6",
        "optimize.min_trades=1", "optimize.walk_forward.folds=2", "optimize.walk_forward.cv_blocks=1",
        "optimize.pruner=none", "optimize.write_plots=false",
        "+optimize.space={fastLength: {low: 4, high: 10}, slowlength: {low: 15, high: 30}, MACDLength: {low: 3, high: 9}}",
        f"hydra.run.dir={run2}", cwd=tmp_path)
    m2 = json.loads((run2 / "metrics.json").read_text())
    folds = m2["optimize"]["folds"]
    assert len(folds) == 2 and all(f["oos_bars"] > 0 for f in folds)  # walk-forward: each fold tested out of sample
    assert set(m2["best_params"]) == {"fastLength", "slowlength", "MACDLength"}
    pine = (run2 / "strategy.pine").read_text()
    assert f"// Origin: {sec['pine']['origin']}" in pine
    assert "SYNTHETIC" in pine
