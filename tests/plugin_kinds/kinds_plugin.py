"""A local plugin of every kind the pipeline looks up by name (used by tests/test_registry.py).

Loaded as a plugin folder (AIO_PLUGINS_DIR / plugins_dir), never imported as a test module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aio.config import param
from aio.optimize.objectives import Objective
from aio.sizing.steps import SizerBase, StepDef

CALLS: dict[str, int] = {"sampler": 0, "stage": 0}


# -- sizer: a modifier that scales the backtest's own quantity ---------------------------
@dataclass
class HalfConfig(SizerBase):
    fraction: float = param(0.5, gt=0, le=1)


def half(size, x, cfg, idx):
    """Scale the size so far by ``fraction`` (0.5: half)."""
    return np.asarray(size) * cfg.fraction


HALF = StepDef("half_test", half, HalfConfig, base=False, needs_history=lambda c: False)


# -- sampler: optuna's random sampler, counting how often it is built ----------------------
def counting_random(cfg, seed):
    """Random sampling, counted (proves optimize.name picks a plugin sampler)."""
    import optuna

    CALLS["sampler"] += 1
    return optuna.samplers.RandomSampler(seed=seed)


# -- strategy kind: two moving averages from two keys, written out as rules ---------------
def sma_pair(section, path="strategy"):
    """A moving-average cross from `fast`/`slow` keys (a strategy kind generating its rules)."""
    from aio.strategy.spec import load_spec

    fast, slow = int(section.get("fast", 10)), int(section.get("slow", 30))
    spec = {
        "name": section.get("name", "sma_pair"), "kind": "sma_pair_test",
        "params": {"fast": fast, "slow": slow},
        "space": {"fast": {"type": "int", "low": 2, "high": 100}, "slow": {"type": "int", "low": 3, "high": 300}},
        "indicators": {"f": {"fn": "SMA", "inputs": {"close": "close"}, "params": {"timeperiod": "fast"}},
                       "s": {"fn": "SMA", "inputs": {"close": "close"}, "params": {"timeperiod": "slow"}}},
        "rules": [{"id": "L", "when": "crossover(f, s)", "action": "entry", "direction": "long"},
                  {"id": "S", "when": "crossunder(f, s)", "action": "entry", "direction": "short"}],
    }
    return load_spec(spec, path)


# -- objective computed from the trades, not a metrics key --------------------------------
def mean_trade_pnl(result, metrics):
    """Mean P&L per closed trade, read from the trades table."""
    trades = result.trades
    return float(trades["pnl"].mean()) if trades.height else float("nan")


MEAN_TRADE = Objective("mean_trade_test", None, "maximize", "mean P&L per trade", fn=mean_trade_pnl)


# -- task: bars only, then a stage of its own ---------------------------------------------
def stage_count_bars(run):
    CALLS["stage"] += 1
    Path(run.artifact("bar_count.txt")).write_text(str(len(run.bars)))


def stage_explode(run):
    raise RuntimeError("boom: injected failure after the bars")


def register(registry):
    registry.add("sizer", "half_test", HALF, config=HalfConfig)
    registry.add("sampler", "counting_random_test", counting_random)
    registry.add("strategy", "sma_pair_test", sma_pair,
                 config={"kind": "sma_pair_test", "name": "sma_pair_test", "fast": 10, "slow": 30})
    registry.add("objective", "mean_trade_test", MEAN_TRADE)
    registry.add("task", "bars_only_test", ["ingest", "bars", stage_count_bars])
    registry.add("task", "fails_test", ["ingest", "bars", stage_explode])
