"""The vlm proposer on the tiny MiniCPM-V and Idefics3 checkpoints built from config (CPU).

The weights are random, so the proposals are nonsense; what is tested is the mechanics:
every line the constrained decoder writes parses and validates as a strategy, rounds
see the leaderboard of earlier rounds, the same seed gives the same proposals, the same
rule written twice is one candidate, and the inputs never read bars after the proposal
window. The grammar itself is checked against llguidance's matcher with hand-written
lines (accepted and rejected).
"""

from __future__ import annotations

import numpy as np
import pytest

from aio.errors import ConfigError

FAST = dict(rounds=2, per_round=3, scales=[1, 4], chart_bars=32, chart_px=64, summary_series=3, leaderboard=2)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny matrices on a shared 2-core machine: one torch thread is ~15x faster than many."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def market():
    import yaml

    from aio.appconfig import REPO
    from aio.backtest import BacktestConfig
    from aio.bars import TimeBars, TimeBarsConfig
    from aio.config import build
    from aio.data.synthetic import SyntheticDataConfig, SyntheticSource
    from aio.discover.funnel import evaluator
    from aio.discover.grammar import Grammar, GrammarConfig

    sec = yaml.safe_load((REPO / "conf" / "data" / "synthetic.yaml").read_text())
    sec.update(seed=3, start="2024-03-04", end="2024-03-06")
    bars = TimeBars(TimeBarsConfig()).build(SyntheticSource(build(SyntheticDataConfig, sec, "data")).load())
    frame = bars.frame
    bt = build(BacktestConfig, yaml.safe_load((REPO / "conf" / "backtest" / "default.yaml").read_text()), "backtest")
    arrays = {c: frame.get_column(c).to_numpy() for c in ("open", "high", "low", "close", "volume")}
    pe = frame.height // 2
    gcfg = GrammarConfig(indicators=["RSI", "EMA", "SMA", "CCI", "BBANDS"], lengths=[10, 20], lags=[1, 5])
    grammar = Grammar(gcfg, {k: v[:pe] for k, v in arrays.items()})
    return {"frame": frame, "ev": evaluator(frame, bt, "EURUSD", "1m"), "arrays": arrays, "pe": pe, "grammar": grammar}


def context(market, seed: int = 0):
    from aio.discover.proposers import ProposeContext
    from aio.strategy.rules import price_env

    return ProposeContext(grammar=market["grammar"], evaluator=market["ev"], proposal_end=market["pe"],
                          discovery_end=market["frame"].height, rng=np.random.default_rng(seed),
                          env=price_env(market["arrays"]), symbol="EURUSD", timeframe="1m")


@pytest.fixture(scope="module")
def vlms(tmp_path_factory):
    from aio.discover.proposers.vlm import load_vlm
    from aio.vlm.tiny import build_tiny

    root = tmp_path_factory.mktemp("tiny_vlm_prop")
    return {"minicpm_v": load_vlm({"name": "minicpm_v", "name_or_path": str(build_tiny("minicpm_v", root / "m"))}),
            "hf_vlm": load_vlm({"name": "hf_vlm", "name_or_path": str(build_tiny("idefics3", root / "i"))})}


def proposer(vlm, **over):
    from aio.config import build
    from aio.discover.proposers.vlm import VLMProposer, VLMProposerConfig

    return VLMProposer(build(VLMProposerConfig, {**FAST, **over}, "discover.vlm"), vlm=vlm)


@pytest.fixture(scope="module")
def runs(vlms, market):
    """One two-round run per family (shared by the mechanics tests: the CPU decoder is slow)."""
    out = {}
    for kind, vlm in vlms.items():
        p = proposer(vlm)
        ctx = context(market)
        out[kind] = (p, p.propose(ctx, 100), ctx)
    return out


@pytest.mark.parametrize("kind", ["minicpm_v", "hf_vlm"])
def test_every_proposal_parses_and_validates_as_a_strategy(runs, market, kind):
    from aio.discover.candidate import Candidate
    from aio.discover.funnel import parse_candidates
    from aio.discover.grammar import check_limits
    from aio.strategy import load_spec

    p, cands, _ = runs[kind]
    st = p.stats
    assert st["generated"] == FAST["rounds"] * FAST["per_round"] or st["duplicates"] > 0
    assert st["invalid"] == 0 and st["parsed"] == st["generated"] > 0
    assert len(cands) == st["parsed"] - st["duplicates"]
    for c in cands:
        spec = load_spec(c.spec)  # the generic strategy config builder (the outside door) accepts it too
        check_limits(spec, market["grammar"].cfg)
        assert c.proposer == "vlm" and c.meta["tokens"] > 0 and c.meta["proposal"]
    fresh = [Candidate("vlm", c.spec, dict(c.meta)) for c in cands]
    parse_candidates(fresh, market["grammar"].cfg)  # the funnel's own parsing and dedup
    assert all(c.status == "parsed" for c in fresh), [(c.status, c.reason) for c in fresh]


def test_round_two_sees_round_one_leaderboard(runs):
    p, cands, _ = runs["hf_vlm"]
    assert len(p.prompts) == 2 and "Leaderboard" not in p.prompts[0]
    first = [c for c in cands if c.meta["round"] == 1]
    assert first
    for c in first:
        assert c.meta["proposal"] in p.prompts[1]
        s = c.meta["screen_sharpe"]
        assert f"trades {c.meta['screen_trades']}" in p.prompts[1]
        if s is not None:
            assert f"screen Sharpe {s:.3g}" in p.prompts[1]


def test_screen_figures_are_the_evaluators_on_the_proposal_window(runs, market):
    _, cands, _ = runs["minicpm_v"]
    c = cands[0]
    e = market["ev"].run(c.parsed, None, start=0, end=market["pe"], metrics=["sharpe", "trade_count"])
    assert c.meta["screen_trades"] == e.metrics["trade_count"]


def test_same_seed_same_proposals(vlms, market, runs):
    p0, c0, _ = runs["hf_vlm"]
    p1 = proposer(vlms["hf_vlm"])
    again = p1.propose(context(market, seed=0), 100)
    assert [c.meta["proposal"] for c in again] == [c.meta["proposal"] for c in c0]
    other = proposer(vlms["hf_vlm"], rounds=1).propose(context(market, seed=1), 100)
    assert [c.meta["proposal"] for c in other] != [c.meta["proposal"] for c in c0][: len(other)]


def test_the_same_rule_written_twice_is_one_candidate(market):
    from aio.discover.proposers.vlm import Collector

    col = Collector(market["grammar"])
    ctx = context(market)
    a = col.add("long when RSI(10) > 70 and close > EMA(20); stop 2.07 ATR, take 2.77 ATR", ctx, {})
    b = col.add("long when close > EMA(20) and RSI(10) > 70; stop 2.07 ATR, take 2.77 ATR", ctx, {})
    c = col.add("long when EMA(20) < close and RSI(10) > 70; stop 2.07 ATR, take 2.77 ATR", ctx, {})
    d = col.add("short when close > EMA(20) and RSI(10) > 70; stop 2.07 ATR, take 2.77 ATR", ctx, {})
    assert a is not None and b is None and c is None and d is not None
    assert col.stats == {"generated": 4, "parsed": 4, "invalid": 0, "duplicates": 2}


def test_grammar_accepts_its_language_and_nothing_else(vlms, market):
    from aio.vlm.constrained import lark_to_grammar
    from aio.vlm.strategy_grammar import StrategyLanguage, lark_grammar, parse_proposal, render_proposal

    g = market["grammar"]
    lang = StrategyLanguage.from_grammar(g)
    vlm = vlms["minicpm_v"]
    grammar = lark_to_grammar(lark_grammar(lang))
    tok = vlm.processor.tokenizer

    def accepted(text: str) -> bool:
        m = vlm.grammar_tokenizer.matcher(grammar)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return m.validate_tokens(ids) == len(ids) and m.consume_tokens(ids) and m.is_accepting()

    rng = np.random.default_rng(0)
    for _ in range(30):  # random grammar genomes round-trip through the text and the matcher
        gen = g.genome(rng)
        line = render_proposal(gen, lang)
        assert accepted(line), line
        back = parse_proposal(line, g)
        assert render_proposal(back, lang) == line
    ok = "long when RSI(10) crosses above 30.5 and close > EMA(20); close when RSI(10) > 70; stop 2.07 ATR, take 2.77 ATR"
    assert accepted(ok)
    for bad in [ok.replace("RSI(10) crosses above 30.5", "RSI(10) crosses above EMA(20)"),  # level vs price
                ok.replace("EMA(20)", "EMA(7)"),  # length not in grammar.lengths
                ok.replace("2.07 ATR", "2.5 ATR"),  # off the bracket grid
                ok.replace("close > EMA(20)", "close > EMA(20) and RSI(10) < 20"),  # 3 entry conditions
                ok.replace("long", "both", 1),
                ok.replace("RSI(10)", "WILLR(10)")]:  # not in grammar.indicators
        assert not accepted(bad), bad
    assert lang.max_chars() >= len(ok)


def test_inputs_read_only_the_proposal_window(market):
    from aio.discover.proposers.vlm import VLMProposerConfig, charts, summary
    from aio.discover.grammar import Grammar

    pe = market["pe"]
    env = {k: v.astype(np.float64) for k, v in market["arrays"].items()}
    cfg = VLMProposerConfig(**FAST)
    before = charts(env, pe, cfg)
    future = {k: v.copy() for k, v in env.items()}
    for k in future:
        future[k][pe:] *= 1.5  # a different future
    after = charts(future, pe, cfg)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    g2 = Grammar(market["grammar"].cfg, {k: v[:pe] for k, v in future.items()})
    assert summary(market["grammar"], pe, 5) == summary(g2, pe, 5)
    # the last chart candle is the last proposal-window bar
    from aio.discover.proposers.vlm import aggregate

    agg = aggregate(env, pe, 4, 32)
    assert agg["close"][-1] == env["close"][pe - 1] and agg["high"][-1] == env["high"][pe - 4:pe].max()


def test_vlm_proposer_needs_a_vision_language_model():
    from aio.discover.proposers.vlm import VLMProposerConfig, model_section

    with pytest.raises(ConfigError, match="model=minicpm_v"):
        model_section({"name": "chartnet"}, {})
    with pytest.raises(ConfigError, match="discover.vlm.scales"):
        VLMProposerConfig(scales=[1, 1])
    assert model_section({"name": "chartnet"}, {"name": "hf_vlm"})["name"] == "hf_vlm"


def test_discover_config_reads_the_vlm_section():
    import yaml

    from aio.appconfig import REPO
    from aio.config import build
    from aio.discover.stage import DiscoverConfig, _with_vlm, proposer

    sec = yaml.safe_load((REPO / "conf" / "discover" / "funnel.yaml").read_text())
    sec["vlm"]["rounds"] = 5
    dc = _with_vlm(build(DiscoverConfig, sec, "discover"))
    p = proposer("vlm", dc.options["vlm"])
    assert p.cfg.rounds == 5 and p.cfg.scales == [1, 4, 16]
    sec["vlm"]["rounds"] = 0
    with pytest.raises(ConfigError, match="rounds"):
        proposer("vlm", _with_vlm(build(DiscoverConfig, sec, "discover")).options["vlm"])


def test_training_pairs_from_accepted_library_strategies(market, tmp_path):
    """chart window -> accepted strategy: the target is the strategy in the proposal language
    (round trip through the library), the images are the proposer's charts of that window."""
    import json

    from PIL import Image

    from aio.config import build
    from aio.discover.candidate import Candidate
    from aio.discover.funnel import make_windows
    from aio.discover.library import write_candidates
    from aio.discover.proposers.distill import _to_spec, _Feat
    from aio.discover.stage import DiscoverConfig
    from aio.discover.grammar import Term
    from aio.store import PatternLibrary
    from aio.vlm.strategy_grammar import StrategyLanguage, render_proposal
    from aio.vlm.strategy_pairs import write_pairs

    frame = market["frame"]
    g = market["grammar"]
    dc = build(DiscoverConfig, {"name": "funnel", "grammar": {"indicators": ["RSI", "EMA", "SMA", "CCI", "BBANDS"],
                                                             "lengths": [10, 20], "lags": [1, 5]},
                                "vlm": {"scales": [1, 4], "chart_bars": 32, "chart_px": 64}}, "discover")
    w = make_windows(frame.height, dc.holdout_pct, dc.embargo_bars, dc.funnel.tune)
    rng = np.random.default_rng(4)
    genomes = [g.genome(rng) for _ in range(3)]
    cands = []
    for i, gen in enumerate(genomes):
        c = Candidate("vlm", g.to_spec(gen, name=f"c{i}"))
        c.id, c.status = f"d{i}", ("accepted" if i < 2 else "rejected")
        cands.append(c)
    rsi = next(b for b in g.blocks if b.label == "RSI")
    distilled = _to_spec(g, [_Feat("dist", Term(rsi, 10))], ((0, "le", 40.0),), 1, 1.0, 2.0, "ds")
    c = Candidate("distill", distilled)
    c.id, c.status = "d9", "accepted"
    cands.append(c)
    lib = PatternLibrary(tmp_path / "lib.lancedb")
    from aio.discover.stage import _iso

    ts = frame.get_column("ts_event")
    lineage = {"symbol": "EURUSD", "timeframe": "1m", "synthetic": True,
               "window": {"start": _iso(ts[0]), "end": _iso(ts[-1]), **w.as_dict()}}
    write_candidates(lib, cands, lineage)
    res = write_pairs(lib, frame, tmp_path / "pairs", dc, "EURUSD", "1m", True)
    assert (res["pairs"], res["not_accepted"], res["not_expressible"]) == (2, 1, 1)
    lines = [json.loads(x) for x in (tmp_path / "pairs" / "pairs.jsonl").read_text().splitlines()]
    gw = type(g)(g.cfg, {k: v[: w.proposal_end] for k, v in market["arrays"].items()})
    lang = StrategyLanguage.from_grammar(gw)
    from aio.discover.grammar import canonical_text, fast_spec
    from aio.vlm.strategy_grammar import parse_proposal

    def canon(spec):  # the rules; brackets are snapped to the language's grid (the tuner moves them later)
        return "; ".join(p for p in canonical_text(fast_spec(spec)).split("; ") if not p.startswith(("stop", "take")))

    got = sorted(canon(gw.to_spec(parse_proposal(x["target"], gw))) for x in lines)
    assert got == sorted(canon(c.spec) for c in cands[:2])  # the target says exactly the stored rules
    grid = {v for vs in (*lang.stops.values(), *lang.takes.values()) for v in vs}
    assert all(x["target"].split("stop ")[1].split()[0].rstrip("%,") in grid for x in lines)
    assert all(x["target"] == render_proposal(parse_proposal(x["target"], gw), lang) for x in lines)
    for x in lines:
        assert x["synthetic"] is True and "Leaderboard" not in x["prompt"] and len(x["images"]) == 2
        im = Image.open(tmp_path / "pairs" / x["images"][0])
        assert im.size == (64, 64)


def test_a_vlm_proposer_without_a_vision_language_model_fails_before_any_work():
    from omegaconf import OmegaConf

    from aio.discover.stage import validate

    cfg = OmegaConf.create({"discover": {"name": "funnel", "proposers": ["vlm", "grammar_search"]},
                            "model": {"name": "none"}})
    with pytest.raises(ConfigError, match="model=minicpm_v or model=hf_vlm"):
        validate(cfg, "discover")
    cfg.model = {"name": "hf_vlm"}
    validate(cfg, "discover")  # the model section itself is the model plugin's to check


@pytest.mark.slow
def test_task_discover_with_the_vlm_proposer_end_to_end(tmp_path):
    """python -m aio task=discover with discover.proposers=[vlm, grammar_search] and the tiny
    Idefics3 checkpoint: the VLM's proposals are in the leaderboard, the trial ledger (SQLite,
    read back with sqlite3) and the strategy library, and the verdict compares them with the control."""
    import csv
    import json
    import os
    import sqlite3
    import subprocess
    import sys
    from pathlib import Path

    from aio.vlm.tiny import build_tiny

    repo = Path(__file__).resolve().parent.parent
    ckpt = build_tiny("idefics3", tmp_path / "ckpt")
    run = tmp_path / "run"
    args = [sys.executable, "-m", "aio", "task=discover", "data.start=2024-03-04", "data.end=2024-03-08",
            "discover=funnel", "discover.proposers=[vlm,grammar_search]", "discover.budget=6", "discover.vlm.rounds=2",
            "discover.vlm.per_round=2", "discover.vlm.chart_px=64", "discover.vlm.summary_series=3", "model=hf_vlm",
            f"model.name_or_path={ckpt}", "model.folds=1", "model.max_predict_rows=20", "model.calibration.enabled=false",
            f"store.path={tmp_path / 'lib.lancedb'}", f"hydra.run.dir={run}", "discover.funnel.tune.n_trials=3",
            "discover.funnel.tune.top=1", "discover.funnel.tune.folds=2", "discover.funnel.pbo_configs=4",
            "discover.funnel.spa_reps=100"]
    env = {**os.environ, "PYTHONPATH": str(repo), "AIO_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    p = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    d = json.loads((run / "metrics.json").read_text())["discover"]
    assert d["proposed_by"]["vlm"] == 4 and "vlm: 2 rounds" in " ".join(d["notes"])
    assert "model's" in d["model_vs_control"]["verdict"]  # vlm is a model proposer, judged against the control
    with (run / "discover" / "leaderboard.csv").open() as fh:
        rows = [r for r in csv.reader(fh) if r and not r[0].startswith("#")]
    assert sum(r[1] == "vlm" for r in rows[1:]) == 4
    db = sqlite3.connect(run / "discover" / "ledger.sqlite")
    n_vlm = db.execute("select count(*) from trials where proposer = 'vlm'").fetchone()[0]
    n_all = db.execute("select count(*) from trials").fetchone()[0]
    assert n_vlm >= 4 and d["ledger"]["trials"] == n_all  # the DSR's trial count includes the VLM's tries
    from aio.discover.library import rows as lib_rows
    from aio.store import PatternLibrary

    mine = [r for r in lib_rows(PatternLibrary(tmp_path / "lib.lancedb")) if (r["discover"] or {}).get("proposer") == "vlm"]
    assert len(mine) == 4 and all(r["discover"]["meta"]["proposal"] for r in mine)
