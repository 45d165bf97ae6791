"""Benchmark: discovery candidates evaluated per second, aio vs a backtesting.py loop.

14 days of synthetic EURUSD M1 (seeded; labelled synthetic). Candidates come from the
discovery grammar (aio.discover.grammar): for each random genome, its first crossing
condition X becomes a reversal strategy, "entry long when crossover(X), entry short when
crossunder(X)", 1 unit, market orders at the next open, no costs: the semantics both
engines share exactly, so trades can be compared one by one. (Discovery's own candidates
add ATR/percent brackets, whose fill conventions differ between the engines.)

aio: per candidate, the rules evaluated through the Evaluator (a fresh indicator cache
each time, no sharing across candidates), the compiled backtest and the metrics the
funnel reads (net profit, Sharpe, trade count). Peer: per candidate, a backtesting.py
Strategy computing the same indicators with the same TA-Lib calls in init(), crossing
logic in next(), Backtest.run() (which computes its statistics). Trades must be identical
on a sample (entry/exit bars, prices, sides). Last line: one JSON object, ratio = peer
seconds per candidate / aio seconds per candidate.

    python benchmarks/discover.py [--candidates 400] [--peer-candidates 12]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def bars_14d():
    from aio.bars import TimeBars, TimeBarsConfig
    from aio.data.synthetic import SyntheticDataConfig, SyntheticSource

    market = SyntheticSource(SyntheticDataConfig(start="2024-03-04", end="2024-03-18", seed=42)).load()
    return TimeBars(TimeBarsConfig()).build(market)


def crossing_specs(grammar, n: int, seed: int = 0) -> list[dict]:
    """Reversal strategies from the first crossing of random genomes (distinct ones)."""
    from aio.discover.grammar import Atom, Genome

    rng = np.random.default_rng(seed)
    out, seen = [], set()
    tries = 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        g = grammar.genome(rng)
        atom = next((a for a in g.entry if a.op in ("xup", "xdn")), None)
        if atom is None or atom in seen:
            continue
        seen.add(atom)
        up = grammar.to_spec(Genome("long", (Atom("xup", atom.a, atom.b, atom.level),), (), "pct", 0.1, 0.1), "c")
        dn = grammar.to_spec(Genome("short", (Atom("xdn", atom.a, atom.b, atom.level),), (), "pct", 0.1, 0.1), "c")
        spec = dict(up)
        spec["name"] = f"c{len(out)}"
        spec["params"] = {**dn["params"], **up["params"]}
        spec["space"] = {**dn["space"], **up["space"]}
        spec["indicators"] = {**dn["indicators"], **up["indicators"]}
        spec["rules"] = [{**up["rules"][0], "id": "Long"}, {**dn["rules"][0], "id": "Short"}]
        spec.pop("exit")
        for k in ("stop", "take"):
            spec["params"].pop(k, None)
            spec["space"].pop(k, None)
        out.append(spec)
    return out


# --- aio ---------------------------------------------------------------------------------

def aio_eval(ev, spec):
    ev._cache = None  # no indicator sharing across candidates: each pays for its own
    e = ev.run(spec, None, metrics=["net_profit", "sharpe", "trade_count"])
    return e


# --- backtesting.py ------------------------------------------------------------------------

def peer_frame(frame):
    import pandas as pd

    idx = pd.to_datetime(frame["ts_event"].to_numpy(), utc=True)
    return pd.DataFrame({"Open": frame["open"].to_numpy(), "High": frame["high"].to_numpy(),
                         "Low": frame["low"].to_numpy(), "Close": frame["close"].to_numpy(),
                         "Volume": frame["volume"].to_numpy()}, index=idx)


def peer_eval(df, spec_obj):
    """The same rule through backtesting.py: the condition arrays come from the same
    TA-Lib calls on the same columns, evaluated in init() (as an Indicator)."""
    from backtesting import Backtest, Strategy

    from aio.strategy.rules import series_env
    from aio.strategy.evaluate import _truth, evaluate

    def conditions(o, h, l, c, v):
        env = series_env(spec_obj, {"open": np.asarray(o, float), "high": np.asarray(h, float),
                                    "low": np.asarray(l, float), "close": np.asarray(c, float),
                                    "volume": np.asarray(v, float)})
        n = len(env["close"])
        up = _truth(evaluate(spec_obj.ast("rule:Long:when"), env, n), n)
        dn = _truth(evaluate(spec_obj.ast("rule:Short:when"), env, n), n)
        return np.vstack([up, dn]).astype(float)

    class Rule(Strategy):
        def init(self):
            d = self.data
            self.cond = self.I(conditions, d.Open, d.High, d.Low, d.Close, d.Volume, plot=False)

        def next(self):
            # an entry in the direction already held is ignored (TradingView, pyramiding 1);
            # backtesting.py's exclusive_orders would close and reopen the trade instead
            if self.cond[0][-1] > 0 and not self.position.is_long:
                self.buy(size=1)
            elif self.cond[1][-1] > 0 and not self.position.is_short:
                self.sell(size=1)

    bt = Backtest(df, Rule, cash=1_000_000, commission=0.0, trade_on_close=False, exclusive_orders=True,
                  finalize_trades=True)
    return bt.run()


def same_trades(ours, theirs, last_open: float, last_close: float) -> bool:
    a = np.column_stack([ours["entry_bar"].to_numpy(), ours["exit_bar"].to_numpy()])
    b = np.column_stack([theirs["EntryBar"].to_numpy(), theirs["ExitBar"].to_numpy()])
    if a.shape != b.shape:
        return False
    if not len(a):
        return True
    if not np.array_equal(a, b):
        return False
    if not np.allclose(ours["entry_price"].to_numpy(), theirs["EntryPrice"].to_numpy(), atol=1e-9, rtol=0):
        return False
    # the trade open at the end: aio closes at the last close (TradingView), the peer at the last open
    if not np.allclose(ours["exit_price"].to_numpy()[:-1], theirs["ExitPrice"].to_numpy()[:-1], atol=1e-9, rtol=0):
        return False
    return bool(np.array_equal(np.where(ours["side"].to_numpy() == "long", 1, -1), np.sign(theirs["Size"].to_numpy())))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=400)
    ap.add_argument("--peer-candidates", type=int, default=12)
    args = ap.parse_args()

    from aio.backtest import BacktestConfig
    from aio.backtest.evaluator import Evaluator
    from aio.discover.grammar import Grammar, GrammarConfig, fast_spec

    bars = bars_14d()
    frame = bars.frame
    cols = ("open", "high", "low", "close", "volume")
    grammar = Grammar(GrammarConfig(), {c: frame.get_column(c).to_numpy() for c in cols})
    specs = [fast_spec(s) for s in crossing_specs(grammar, args.candidates)]
    bt = BacktestConfig(initial_capital=1_000_000, qty=1, commission=0.0, slippage_ticks=0, use_spread=False)
    ev = Evaluator(frame, bt, symbol="EURUSD", timeframe="1m")
    aio_eval(ev, specs[0])  # numba warm-up
    t = time.perf_counter()
    ours = [aio_eval(ev, s) for s in specs]
    aio_s = (time.perf_counter() - t) / len(specs)

    df = peer_frame(frame)
    sample = specs[: args.peer_candidates]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        theirs = [peer_eval(df, s) for s in sample]
        peer_s = (time.perf_counter() - t) / len(sample)
    last_open, last_close = float(frame["open"][-1]), float(frame["close"][-1])
    agree = [same_trades(o.result.trades, p["_trades"], last_open, last_close) for o, p in zip(ours, theirs)]
    trades = [int(o.metrics["trade_count"]) for o in ours[: len(sample)]]
    print(f"aio: {1 / aio_s:.0f} candidates/s ({aio_s * 1e3:.2f} ms each over {len(specs)}), backtesting.py: "
          f"{1 / peer_s:.2f} candidates/s ({peer_s:.3f} s each over {len(sample)}); identical trades on "
          f"{sum(agree)}/{len(agree)} (trades per candidate {min(trades)}..{max(trades)})")
    print(json.dumps({"benchmark": "discover", "bars": int(frame.height), "synthetic": True,
                      "candidates_aio": len(specs), "candidates_peer": len(sample),
                      "aio_candidates_per_s": round(1 / aio_s, 1), "peer_candidates_per_s": round(1 / peer_s, 3),
                      "identical_trades": f"{sum(agree)}/{len(agree)}", "agree": all(agree),
                      "ratio": round(peer_s / aio_s, 1)}))


if __name__ == "__main__":
    main()
