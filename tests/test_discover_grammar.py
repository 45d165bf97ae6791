"""Discovery grammar: Pine-mapped building blocks from the registry (plugins included),
candidates that are valid strategies and export to Pine, canonical text, no lookahead."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from aio.discover.grammar import (Grammar, GrammarConfig, canonical_text, check_limits, fast_spec, pine_blocks,
                                  structure_text)
from aio.errors import ConfigError
from aio.strategy import load_spec


def _bars(n: int = 3000, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 1.1 + np.cumsum(rng.normal(0, 2e-4, n))
    high = close + np.abs(rng.normal(0, 1e-4, n))
    low = close - np.abs(rng.normal(0, 1e-4, n))
    open_ = np.concatenate([[close[0]], close[:-1]])
    return {"open": open_, "high": np.maximum(high, open_), "low": np.minimum(low, open_), "close": close,
            "volume": rng.uniform(1, 5, n)}


@pytest.fixture(scope="module")
def grammar() -> Grammar:
    return Grammar(GrammarConfig(), _bars())


def test_blocks_are_every_pine_mapped_price_indicator():
    from aio.indicators import builtin_indicators

    cfg = GrammarConfig()
    labels = {b.fn for b in pine_blocks(cfg)}
    defs = builtin_indicators()
    for name, d in defs.items():
        usable = (d.pine is not None and name not in cfg.exclude and set(d.inputs) <= {"open", "high", "low", "close",
                                                                                         "volume"})
        twin = not d.pine_exact and d.tv_variant in defs
        assert (name in labels) == (usable and not twin), name
    assert "RSI" in labels and "MACD_TV" in labels and "MACD" not in labels  # the TradingView-exact twin


def test_a_plugin_indicator_with_pine_joins_the_grammar():
    from aio.indicators import get_indicator
    from aio.registry import registry

    sma = get_indicator("SMA")
    mine = dataclasses.replace(sma, name="MY_PLUGIN_MA")
    registry.add("indicator", "MY_PLUGIN_MA", mine, source="test")
    try:
        assert "MY_PLUGIN_MA" in {b.fn for b in pine_blocks(GrammarConfig())}
        no_pine = dataclasses.replace(sma, name="MY_DARK_MA", pine=None)
        registry.add("indicator", "MY_DARK_MA", no_pine, source="test")
        assert "MY_DARK_MA" not in {b.fn for b in pine_blocks(GrammarConfig())}
    finally:
        registry.plugins["indicator"].pop("MY_PLUGIN_MA", None)
        registry.plugins["indicator"].pop("MY_DARK_MA", None)


def test_genomes_are_valid_strategies_within_limits_that_export_to_pine(grammar):
    from aio.backtest import BacktestConfig
    from aio.pine import export_strategy

    rng = np.random.default_rng(0)
    genomes = [grammar.genome(rng) for _ in range(60)] + grammar.single_rules()[:40]
    for g in genomes:
        spec = fast_spec(grammar.to_spec(g, "cand"))
        check_limits(spec, grammar.cfg)
        assert not spec.uses_model()
        text = export_strategy(spec, None, BacktestConfig())
        assert text.startswith("//@version=6") and "strategy.entry" in text
    # the generic loader builds the same strategy from the same mapping
    d = grammar.to_spec(genomes[0], "cand")
    assert canonical_text(load_spec(d)) == canonical_text(fast_spec(d))


def test_exported_candidates_parse_as_pine(grammar, tmp_path):
    from aio.backtest import BacktestConfig
    from aio.pine import export_strategy
    from aio.pine.check import check_files

    rng = np.random.default_rng(1)
    paths = []
    for i in range(8):
        p = tmp_path / f"c{i}.pine"
        p.write_text(export_strategy(fast_spec(grammar.to_spec(grammar.genome(rng), f"c{i}")), None, BacktestConfig()))
        paths.append(p)
    reports = check_files(paths)
    assert all(r.ok for r in reports), [(r.file, r.problems) for r in reports if not r.ok]


def test_rule_size_limits_are_enforced(grammar):
    spec = load_spec({"name": "big", "indicators": {"r": {"fn": "RSI"}},
                      "rules": [{"id": "E", "when": "r > 50 and r > 51 and r > 52", "action": "entry"}]})
    with pytest.raises(ConfigError, match="allows 2"):
        check_limits(spec, GrammarConfig(max_entry_conditions=2))
    check_limits(spec, GrammarConfig(max_entry_conditions=3))


def test_canonical_text_ignores_names_and_order_not_values():
    a = load_spec({"name": "a", "params": {"n": 14, "lv": 30.0},
                   "space": {"n": {"type": "int", "low": 2, "high": 50}, "lv": {"type": "float", "low": 0, "high": 100}},
                   "indicators": {"rsi": {"fn": "RSI", "params": {"timeperiod": "n"}}, "m": {"fn": "SMA"}},
                   "rules": [{"id": "E", "when": "rsi < lv and close > m", "action": "entry"}]})
    b = load_spec({"name": "b", "indicators": {"osc": {"fn": "RSI", "params": {"timeperiod": 14}}, "avg": {"fn": "SMA"}},
                   "rules": [{"id": "Go", "when": "avg < close and 30 > osc", "action": "entry"}]})
    c = load_spec({"name": "c", "indicators": {"osc": {"fn": "RSI", "params": {"timeperiod": 15}}, "avg": {"fn": "SMA"}},
                   "rules": [{"id": "Go", "when": "avg < close and 30 > osc", "action": "entry"}]})
    assert canonical_text(a) == canonical_text(b)
    assert canonical_text(a) != canonical_text(c)
    assert "RSI(close;timeperiod=14)" in canonical_text(a) and "SMA(close;timeperiod=30)" in canonical_text(a)
    # the structure (parameter names kept) is what one tuned rule shares
    assert structure_text(a) != structure_text(b)
    assert canonical_text(a, {"n": 15}) == canonical_text(c)


def test_candidate_signals_ignore_the_future(grammar):
    """Signals at bar t of any candidate are the same when bars after t are rewritten."""
    from aio.strategy import signals

    arrays = _bars(2000, seed=5)
    t = 1500
    future = _bars(2000, seed=6)
    changed = {k: np.concatenate([v[: t + 1], future[k][t + 1:]]) for k, v in arrays.items()}
    rng = np.random.default_rng(2)
    for _ in range(30):
        spec = fast_spec(grammar.to_spec(grammar.genome(rng), "cand"))
        s1, s2 = signals(spec, arrays), signals(spec, changed)
        for o1, o2 in zip(s1.orders, s2.orders):
            assert np.array_equal(o1.when[: t + 1], o2.when[: t + 1])
        if s1.brackets is not None:
            for f in ("stop_dist", "take_dist"):
                a1, a2 = getattr(s1.brackets, f), getattr(s2.brackets, f)
                if a1 is not None:
                    assert np.array_equal(a1[: t + 1], a2[: t + 1], equal_nan=True)


def test_atr_bracket_entries_wait_for_their_atr(grammar):
    from aio.strategy import signals

    rng = np.random.default_rng(4)
    arrays = _bars(500)
    for _ in range(40):
        g = grammar.genome(rng)
        if g.bracket != "atr":
            continue
        spec = fast_spec(grammar.to_spec(g, "cand"))
        sig = signals(spec, arrays)
        entry = next(o for o in sig.orders if o.action == "entry")
        assert np.all(np.isfinite(sig.brackets.stop_dist[entry.when]))
