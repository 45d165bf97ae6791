"""Position sizing: plugins that fill ``Signals.size`` (units per bar) step by step.

``sizer=NAME`` picks the base step (fixed, percent_of_equity, vol_target, kelly) or a
modifier applied to the backtest's own quantity (confidence, drawdown_guard);
``sizer.then`` chains more steps and ``sizer.limits`` caps the result. Every step's
output is kept in ``Signals.size_steps`` so each trade shows how its size came about.
"""

from __future__ import annotations

from typing import Any

from aio.sizing.chain import Chain, describe, parse_chain, size_signals
from aio.sizing.steps import STEPS, LimitsConfig, SizingInputs

__all__ = ["Chain", "LimitsConfig", "STEPS", "SizingInputs", "apply_sizer", "describe", "parse_chain",
           "size_signals", "register"]


def apply_sizer(run: Any, signals: Any, bt_cfg: Any) -> tuple[Any, Any]:
    """Size ``signals`` for the run's bars with its ``sizer`` section -> (signals, backtest config)."""
    from aio.appconfig import section

    return size_signals(section(run.cfg, "sizer"), run.bars.frame, signals, bt_cfg, run.predictions)


def register(registry) -> None:
    # The StepDef carries its typed config (st.config); conf/sizer/*.yaml are the Hydra
    # choices, so the dataclasses are not also put in the ConfigStore (Hydra would
    # match them as schemas of the same-named files, a deprecated behaviour).
    for name, st in STEPS.items():
        registry.add("sizer", name, st, description=(st.fn.__doc__ or "").strip().splitlines()[0])
