"""Discovery on synthetic bars in-process (the pipeline's discover stage without Hydra)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from aio.appconfig import REPO

# Two plants on different indicators and directions. Both are mean reversion after a
# sharp move, which no shipped strategy trades (trend-following plants are partly caught
# by sma_cross and the RSI one by tv_rsi, which the SPA gate rightly refuses to call new).
PLANT_CCI_LONG = {"indicators": {"cci": {"fn": "CCI", "params": {"timeperiod": 20}}},
                  "when": "crossunder(cci, -100)", "direction": "long", "drift_pips": 6.0, "horizon_bars": 10, "repay_bars": 240}
PLANT_STOCH_SHORT = {"indicators": {"sk": {"fn": "STOCH", "output": "slowk"}},
                     "when": "crossover(sk, 80)", "direction": "short", "drift_pips": 8.0, "horizon_bars": 10, "repay_bars": 240}


@dataclass
class Discovery:
    result: Any  # FunnelResult
    bars: Any
    market: Any
    windows: Any


def bars_for(plant: dict | None, seed: int, start: str, end: str) -> tuple[Any, Any]:
    from aio.bars import TimeBars, TimeBarsConfig
    from aio.config import build
    from aio.data.synthetic import SyntheticDataConfig, SyntheticSource

    sec = yaml.safe_load((REPO / "conf" / "data" / "synthetic.yaml").read_text())
    sec.update(seed=seed, start=start, end=end)
    if plant is not None:
        base = yaml.safe_load((REPO / "conf" / "data" / "synthetic_planted.yaml").read_text())["plant"]
        sec["plant"] = {**base, **plant}
    market = SyntheticSource(build(SyntheticDataConfig, sec, "data")).load()
    return market, TimeBars(TimeBarsConfig()).build(market)


def discover(plant: dict | None, ledger_dir: Any, seed: int = 42, start: str = "2024-03-04", end: str = "2024-03-16",
             proposers: tuple[str, ...] = ("grammar_search", "library"), budget: int = 400,
             predictions: dict | None = None, overrides: dict | None = None) -> Discovery:
    from aio.backtest import BacktestConfig
    from aio.config import build
    from aio.discover.funnel import evaluator, make_windows, open_ledger, run_funnel
    from aio.discover.grammar import Grammar
    from aio.discover.proposers import ProposeContext
    from aio.discover.stage import DiscoverConfig, proposer
    from aio.strategy.rules import price_env

    market, bars = bars_for(plant, seed, start, end)
    sec = yaml.safe_load((REPO / "conf" / "discover" / "funnel.yaml").read_text())
    sec.update(overrides or {})
    dc = build(DiscoverConfig, sec, "discover")
    bt = build(BacktestConfig, yaml.safe_load((REPO / "conf" / "backtest" / "default.yaml").read_text()), "backtest")
    frame = bars.frame
    w = make_windows(frame.height, dc.holdout_pct, dc.embargo_bars, dc.funnel.tune)
    disc = frame.slice(0, w.discovery_end)
    cols = ("open", "high", "low", "close", "volume")
    ev = evaluator(disc, bt, "EURUSD", "1m")
    grammar = Grammar(dc.grammar, {c: disc.get_column(c).to_numpy()[: w.proposal_end] for c in cols})
    ctx = ProposeContext(grammar=grammar, evaluator=ev, proposal_end=w.proposal_end, discovery_end=w.discovery_end,
                         predictions={k: np.asarray(v)[: w.discovery_end] for k, v in (predictions or {}).items()},
                         rng=np.random.default_rng(seed), min_trades=dc.funnel.screen_min_trades,
                         env=price_env({c: disc.get_column(c).to_numpy() for c in cols}))
    cands = []
    for name in proposers:
        cands += proposer(name, dc.options.get(name)).propose(ctx, budget if name != "library" else 0)
    res = run_funnel(cands, frame=frame, bt=bt, cfg=dc.funnel, grammar_cfg=dc.grammar, windows=w,
                     ledger=open_ledger(ledger_dir), seed=seed, symbol="EURUSD", timeframe="1m", ev=ev, progress=False)
    return Discovery(res, bars, market, w)


def event_bars(market: Any, bars: Any) -> np.ndarray:
    """Bar index of each planted event (the bar whose close fired the rule)."""
    ts = np.asarray(market.meta["plant"]["event_ts_init"], dtype=np.int64)
    ts_init = bars.frame.get_column("ts_init").to_numpy()
    return np.searchsorted(ts_init, ts)


def overlap(entries: list[int], events: np.ndarray, horizon: int) -> float:
    """Share of entry decisions made at a planted event or while its drift runs."""
    if not entries:
        return 0.0
    ev = np.sort(events)
    e = np.asarray(entries)
    i = np.searchsorted(ev, e, side="right") - 1
    ok = (i >= 0) & (e - ev[np.clip(i, 0, None)] < horizon)
    return float(ok.mean())
