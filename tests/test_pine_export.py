"""Pine v6 export: parses with pynescript 0.3 (isolated venv), follows our rules, and
for the tv_* strategies is equivalent to TradingView's built-in scripts."""

from __future__ import annotations

import pytest

from aio.errors import ConfigError, ExportError
from aio.pine import export_strategy
from aio.pine.check import apply_rules, check_files
from aio.strategy import load_builtin, load_spec

SHIPPED = ["tv_rsi", "tv_macd", "tv_bbands", "sma_cross"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from aio.backtest import BacktestConfig

    out = tmp_path_factory.mktemp("pine")
    bt = BacktestConfig(commission=0.01, slippage_ticks=2)
    paths = {}
    for name in SHIPPED:
        p = out / f"{name}.pine"
        p.write_text(export_strategy(load_builtin(name), backtest=bt))
        paths[name] = p
    return paths


def test_every_export_parses_and_follows_our_rules(exported):
    reports = check_files(list(exported.values()))
    for rep in reports:
        assert rep.parsed, rep.problems
        assert rep.ok, (rep.file, rep.problems)


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("//")]


def test_tv_rsi_matches_tradingview_builtin(exported):
    lines = _lines(exported["tv_rsi"].read_text())
    assert "vrsi = ta.rsi(close, length)" in lines
    assert "RsiLE_cond = ta.crossover(vrsi, overSold)" in lines
    assert "RsiSE_cond = ta.crossunder(vrsi, overBought)" in lines
    assert 'strategy.entry("RsiLE", strategy.long, comment="RsiLE")' in lines
    assert 'strategy.entry("RsiSE", strategy.short, comment="RsiSE")' in lines
    assert 'length = input.int(14, "length", minval=2, maxval=50)' in lines


def test_tv_macd_matches_tradingview_builtin(exported):
    lines = _lines(exported["tv_macd"].read_text())
    for want in [
        "fast_ma = ta.ema(close, fastLength)",
        "slow_ma = ta.ema(close, slowlength)",
        "MACD = fast_ma - slow_ma",
        "aMACD = ta.ema(MACD, MACDLength)",
        "delta = MACD - aMACD",
        "MacdLE_cond = ta.crossover(delta, 0)",
        "MacdSE_cond = ta.crossunder(delta, 0)",
        'strategy.entry("MacdLE", strategy.long, comment="MacdLE")',
    ]:
        assert want in lines


def test_tv_bbands_matches_tradingview_builtin(exported):
    text = exported["tv_bbands"].read_text()
    lines = _lines(text)
    assert "basis = ta.sma(close, length)" in lines
    assert "dev = mult * sd" in lines and "sd = ta.stdev(close, length)" in lines
    assert ('strategy.entry("BBandLE", strategy.long, stop=lower, oca_name="BollingerBands", '
            'oca_type=strategy.oca.cancel, comment="BBandLE")') in lines
    # the stop entry is re-armed each bar or cancelled, as in TradingView's script
    i = lines.index("if BBandLE_cond")
    assert lines[i + 2] == "else" and lines[i + 3] == 'strategy.cancel("BBandLE")'


def test_strategy_settings_match_the_backtest(exported):
    head = [ln for ln in exported["sma_cross"].read_text().splitlines() if ln.startswith("strategy(")][0]
    for want in ["commission_type=strategy.commission.percent", "commission_value=0.01", "slippage=2",
                 "default_qty_type=strategy.fixed", "pyramiding=0", "process_orders_on_close=false"]:
        assert want in head


def test_run_parameters_become_input_defaults():
    text = export_strategy(load_builtin("sma_cross"), params={"fast": 7, "slow": 55})
    assert 'fast = input.int(7, "fast"' in text and 'slow = input.int(55, "slow"' in text


def _spec(**over):
    base = {
        "name": "probe", "title": "Probe", "params": {"n": 10}, "space": {"n": {"type": "int", "low": 2, "high": 50}},
        "indicators": {"ma": {"fn": "SMA", "inputs": {"close": "close"}, "params": {"timeperiod": "n"}}},
        "rules": [{"id": "L", "when": "close > ma", "action": "entry", "direction": "long"}],
    }
    base.update(over)
    return load_spec(base)


def test_strings_are_escaped():
    text = export_strategy(_spec(title='My "quoted" \\ strategy'))
    assert 'strategy("My \\"quoted\\" \\\\ strategy", overlay=true)' in text


def test_model_rules_refuse_export_naming_the_rule():
    spec = _spec(rules=[{"id": "AiLong", "when": "model.p_up > 0.6 and close > ma", "action": "entry", "direction": "long"}])
    with pytest.raises(ExportError, match="AiLong"):
        export_strategy(spec)


def test_pine_reserved_names_are_refused():
    spec = _spec(params={"strategy": 10}, space={"strategy": {"type": "int", "low": 2, "high": 50}},
                 indicators={"ma": {"fn": "SMA", "inputs": {"close": "close"}, "params": {"timeperiod": "strategy"}}})
    with pytest.raises(ExportError, match="'strategy' is a Pine keyword or built-in"):
        export_strategy(spec)


def test_bad_names_are_refused_by_the_spec():
    with pytest.raises(ConfigError, match="identifier"):
        _spec(rules=[{"id": 'L") ; strategy.close_all(', "when": "close > ma"}])


def test_checker_catches_what_it_should(tmp_path):
    bad = tmp_path / "bad.pine"
    bad.write_text(
        '//@version=6\nstrategy("x")\n'
        'a = request.security(syminfo.tickerid, "D", close, lookahead=barmerge.lookahead_on)\n'
        'b = ta.rsx(close, 14)\n'
        'strategy.entry("L", strategy.long, when=close > a)\n'
    )
    ok = tmp_path / "ok.pine"
    ok.write_text('//@version=6\nstrategy("x")\n'
                  'a = request.security(syminfo.tickerid, "D", close[1], lookahead=barmerge.lookahead_on)\n')
    broken = tmp_path / "broken.pine"
    broken.write_text('//@version=6\nstrategy("x"\nif (\n')
    rep_bad, rep_ok, rep_broken = check_files([bad, ok, broken])
    assert any("lookahead_on" in p for p in rep_bad.problems)
    assert any("ta.rsx" in p for p in rep_bad.problems)
    assert any("when=" in p for p in rep_bad.problems)
    assert rep_ok.ok
    assert not rep_broken.parsed and "does not parse" in rep_broken.problems[0]


def test_version_rule():
    rep = apply_rules({"file": "x", "ok": True, "version": 5, "calls": []})
    assert rep.problems == ["//@version=6 expected, found 5"]


def test_a_template_plugin_restyles_the_same_translation(tmp_path):
    """A user's template (kind pine_template) gets the typed PineDoc and writes its own layout."""
    from aio.pine import PineDoc, default_template
    from aio.registry import registry

    def banner(doc: PineDoc) -> str:
        text = default_template(doc)
        head, rest = text.split("\n", 1)
        return f"{head}\n// house style: {doc.title}\n{rest}"

    registry.add("pine_template", "house_test", banner)
    spec = load_builtin("tv_rsi")
    plain = export_strategy(spec)
    styled = export_strategy(spec, template="house_test")
    assert styled.splitlines()[1] == "// house style: RSI Strategy"
    assert [ln for ln in styled.splitlines() if not ln.startswith("// house")] == plain.splitlines()
    with pytest.raises(Exception, match="unknown pine_template plugin 'nope'"):
        export_strategy(spec, template="nope")
