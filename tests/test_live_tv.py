"""Acceptance: the tv_* strategies on TradingView's reference bars fed as a stream (a Redis
stream of bars, and a replay) trade exactly as the batch backtest and as TradingView."""

from __future__ import annotations

import numpy as np
import pytest
import redis
import yaml

from aio.backtest import BacktestConfig
from aio.backtest.evaluator import Evaluator
from aio.backtest.tradingview import compare_trades, load_tv_trades
from aio.config import build
from aio.live.config import LiveConfig
from aio.live.engine import make_engine
from aio.live.publish import publish_frame
from aio.live.sources import RedisSource, ReplaySource
from aio.records import MarketData
from aio.strategy import load_spec
from tests._redis_server import redis_server, redis_url  # noqa: F401  (fixtures)
from tests.test_live_engine import REPO
from tests.test_strategy_tv_parity import TV_SETTINGS

CASES = [("tv_rsi", "rsi_trades.csv", "replay"), ("tv_macd", "macd_trades.csv", "redis"),
         ("tv_bbands", "bollinger_trades.csv", "replay")]


@pytest.mark.slow
@pytest.mark.parametrize("strategy, csv, via", CASES)
def test_tv_strategy_on_a_stream_equals_batch_and_tradingview(strategy, csv, via, tv_bars, tv_dir, redis_url,
                                                                 tmp_path):
    section = yaml.safe_load((REPO / "conf" / "strategy" / f"{strategy}.yaml").read_text())
    bt = BacktestConfig(**TV_SETTINGS)
    batch = Evaluator(tv_bars.frame, bt, symbol="EURUSD").run(load_spec(section), metrics=["net_profit"]).result
    eng = make_engine(section, bt, tmp_path / "j.sqlite")
    if via == "redis":
        r = redis.Redis.from_url(redis_url)
        publish_frame(r, "tv:bars", tv_bars.frame, "bars", batch=2000)
        cfg = build(LiveConfig, {"redis_url": redis_url, "stream": "tv:bars", "batch": 2000}, "live")
        from types import SimpleNamespace

        src = RedisSource(cfg, SimpleNamespace(cfg={}))
    else:
        src = ReplaySource.of(MarketData("bars", tv_bars.frame, "EURUSD"), batch=1000)
    stats = eng.run(src)
    assert stats.bars == len(tv_bars) == 23054
    got = eng.result()
    assert got.trades.equals(batch.trades)
    assert np.array_equal(got.equity_values, batch.equity_values)
    assert compare_trades(got, load_tv_trades(tv_dir / csv)) == []
