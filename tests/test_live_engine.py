"""The incremental engine equals the batch backtest, trade for trade; bars as ticks arrive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from aio.backtest import BacktestConfig, run_backtest
from aio.bars import ticks_to_bars
from aio.config import build
from aio.data.synthetic import SyntheticDataConfig, SyntheticSource
from aio.live.aggregate import TickAggregator
from aio.live.engine import make_engine
from aio.live.sources import ReplaySource
from aio.records import MarketData
from aio.strategy import load_spec, signals

REPO = Path(__file__).resolve().parent.parent
STRATEGIES = sorted(p.stem for p in (REPO / "conf" / "strategy").glob("*.yaml"))
TF = 60_000_000_000


def _section(name: str) -> dict:
    return yaml.safe_load((REPO / "conf" / "strategy" / f"{name}.yaml").read_text())


@pytest.fixture(scope="module")
def market():
    cfg = build(SyntheticDataConfig, {"start": "2024-03-04", "end": "2024-03-05T12:00"}, "data")
    return SyntheticSource(cfg).load()


@pytest.fixture(scope="module")
def bt():
    conf = yaml.safe_load((REPO / "conf" / "backtest" / "default.yaml").read_text())
    return build(BacktestConfig, conf, "backtest")


def _batch(section, frame, bt):
    spec = load_spec(section)
    arrays = {c: frame.get_column(c).to_numpy() for c in ("open", "high", "low", "close", "volume")}
    return run_backtest(frame, signals(spec, arrays), bt)


def _bars_equal(live: list, batch: pl.DataFrame) -> None:
    cols = list(batch.columns)
    got = pl.DataFrame([{c: getattr(b, c) for c in cols} for b in live], schema=batch.schema)
    assert got.height == batch.height
    for c in cols:  # bit for bit, NaN where the batch has NaN
        a, b = got.get_column(c).to_numpy(), batch.get_column(c).to_numpy()
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), c


@pytest.mark.parametrize("chunk", [1, 7, 997])
def test_live_bars_equal_batch_bars(market, chunk):
    ticks = market.frame.head(60_000)
    batch, _ = ticks_to_bars(ticks, TF, "mid")
    agg = TickAggregator(TF)
    ids = [str(i) for i in range(ticks.height)]
    out = []
    for s in range(0, ticks.height, chunk):
        out += agg.push(ticks.slice(s, chunk), ids[s:s + chunk], end=s + chunk >= ticks.height)
    _bars_equal(out, batch)
    # each bar's position is its last tick
    opens = ticks.get_column("ts_event").to_numpy() // TF * TF
    last = np.flatnonzero(np.r_[opens[1:] != opens[:-1], True])
    assert [b.last_id for b in out] == [str(i) for i in last]


def test_a_bar_closes_only_after_its_time(market):
    """No lookahead: a bar is emitted only once a tick at or after its ts_init has arrived."""
    ticks = market.frame.head(5_000)
    ts = ticks.get_column("ts_event").to_numpy()
    agg = TickAggregator(TF)
    for i in range(ticks.height):
        for bar in agg.push(ticks.slice(i, 1), [str(i)]):
            assert ts[i] >= bar.ts_init
            assert int(bar.last_id) < i


@pytest.mark.parametrize("name", [s for s in STRATEGIES if not load_spec(_section(s)).uses_model()])
def test_paper_trades_equal_batch(name, market, bt, tmp_path):
    """Every shipped rule strategy: the stream engine's trades are the batch backtest's, row for row."""
    batch_bars, _ = ticks_to_bars(market.frame, TF, "mid")
    want = _batch(_section(name), batch_bars, bt)
    eng = make_engine(_section(name), bt, tmp_path / "j.sqlite")
    eng.run(ReplaySource.of(market, batch=500))
    got = eng.result()
    assert want.n_trades > 3, "the test needs trades to compare"
    assert got.trades.equals(want.trades)
    assert np.array_equal(got.equity_values, want.equity_values)
    # the journal is the trade log: every closed trade is there once
    journaled = eng.journal.events(kind="trade")
    closed = want.trades.filter(pl.col("exit_signal") != "Open")
    assert len(journaled) == closed.height


SIZERS = sorted(p.stem for p in (REPO / "conf" / "sizer").glob("*.yaml") if p.stem != "confidence")


@pytest.mark.slow
@pytest.mark.parametrize("sizer", SIZERS)
def test_paper_sizes_equal_batch(sizer, market, bt, tmp_path):
    """The sizer chain, history-dependent steps (kelly, drawdown_guard) included, sizes each
    live entry exactly as the batch pass does (confidence reads a model: not live)."""
    from aio.backtest.evaluator import Evaluator

    sz = yaml.safe_load((REPO / "conf" / "sizer" / f"{sizer}.yaml").read_text())
    section = _section("sma_cross")
    # 20 hours: the shadow backtests of history-dependent sizers make each close cost O(bars so far)
    ts0 = int(market.frame.get_column("ts_event")[0])
    market = MarketData("ticks", market.frame.filter(pl.col("ts_event") < ts0 + 20 * 3600 * 10**9), "EURUSD",
                        synthetic=True)
    batch_bars, _ = ticks_to_bars(market.frame, TF, "mid")
    want = Evaluator(batch_bars, bt, sizer=sz, symbol="EURUSD").run(load_spec(section)).result
    eng = make_engine(section, bt, tmp_path / "j.sqlite", sizer=sz)
    eng.run(ReplaySource.of(market, batch=1000))
    got = eng.result()
    assert want.n_trades > 3
    assert got.trades.equals(want.trades)
    assert np.array_equal(got.equity_values, want.equity_values)


def test_a_quiet_bar_closes_by_the_clock_and_late_ticks_are_dropped(market):
    """Real-time feeds (live.close_after_ms): the open bar closes once the clock passes its
    ts_init + grace; a tick of it arriving later is counted late, never a second bar."""
    ticks = market.frame.head(3_000)
    ts = ticks.get_column("ts_event").to_numpy()
    opens = ts // TF * TF
    cut = int(np.flatnonzero(opens != opens[0])[0]) + 5  # 5 ticks into the second minute
    agg = TickAggregator(TF)
    first = agg.push(ticks.head(cut), [str(i) for i in range(cut)])
    assert len(first) == 1
    bar2_close = int(opens[cut - 1]) + TF
    assert agg.close_due(bar2_close + 500_000_000, 1_000_000_000) == []  # grace not over yet
    due = agg.close_due(bar2_close + 1_000_000_000, 1_000_000_000)
    assert len(due) == 1 and due[0].ts_event == opens[cut - 1] and due[0].ticks == 5
    rest = ticks.slice(cut, 200)
    more = agg.push(rest, [str(i) for i in range(cut, cut + 200)], end=True)
    late = int((opens[cut:cut + 200] == opens[cut - 1]).sum())
    assert agg.late == late > 0
    assert [b.ts_event for b in more] == sorted(set(opens[cut:cut + 200]) - {opens[cut - 1]})


@pytest.mark.parametrize("name", ["tv_bbands", "tv_rsi"])
def test_incremental_and_whole_history_engines_journal_the_same(name, market, bt, tmp_path):
    """The journal (every decision, order, trade, position) of the bar-by-bar engine equals the
    one of the engine that re-evaluates the whole history at each close."""
    ticks = MarketData("ticks", market.frame.head(120_000), "EURUSD", synthetic=True)
    journals = []
    for inc in (True, False):
        eng = make_engine(_section(name), bt, tmp_path / f"{inc}.sqlite", incremental=inc)
        eng.run(ReplaySource.of(ticks, batch=700))
        journals.append(eng.journal.events())
    assert len(journals[0]) > 1000 and any(k == "trade" for _, _, k, _ in journals[0])
    assert journals[0] == journals[1]
