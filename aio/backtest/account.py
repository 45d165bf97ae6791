"""The run's account: its instrument spec and the quote -> account conversion series.

I/O at the edge: the conversion pair is loaded from the same data source and range as
the traded symbol (so it is cached like any data), before the traded data itself, so a
missing series fails the run before any work.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import structlog

from aio.errors import AioError, ConfigError
from aio.instruments import ConversionPlan, conversion_error, conversion_plan, conversion_rates

log = structlog.get_logger(__name__)


def plan_for(bt: Any, symbol: str) -> ConversionPlan:
    spec = dataclasses.replace(bt, symbol=symbol).instrument_spec()
    return conversion_plan(spec, bt.account_currency, bt.conversion_rate)


def load_conversion_market(plan: ConversionPlan, bt: Any, source_cls: Any, data_cfg: Any) -> Any:
    """The conversion pair's market data, or the up-front error naming the pair and the ways out."""
    spec = dataclasses.replace(bt, symbol=getattr(data_cfg, "symbol", bt.symbol)).instrument_spec()
    overrides = {"symbol": plan.pair, **dict(bt.conversion_data or {})}
    try:
        cfg = dataclasses.replace(data_cfg, **overrides)
    except TypeError as exc:
        raise ConfigError(f"config key backtest.conversion_data has a key the data source does not know: {exc}") from exc
    try:
        market = source_cls(cfg).load()
    except (AioError, OSError) as exc:
        raise conversion_error(spec, plan.account, plan.pair, f"loading it failed ({exc})") from exc
    if market.frame.height == 0:
        raise conversion_error(spec, plan.account, plan.pair, "the source has no data for it in the range")
    log.info("conversion series loaded", pair=plan.pair, rows=market.frame.height, synthetic=market.synthetic)
    return market


def rates_for(plan: ConversionPlan, bars_frame: Any, pair_bars_frame: Any = None):
    return conversion_rates(plan, bars_frame, pair_bars_frame)
