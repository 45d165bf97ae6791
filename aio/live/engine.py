"""The incremental engine: closed bars -> the strategy's rules -> the paper broker, journaled.

At each bar close the rules are evaluated by the batch backend itself
(:func:`aio.strategy.signals`, and the sizer chain by :func:`aio.sizing.size_signals`)
over the bars known so far, and the last bar's values are the decision. There is no
second interpretation of the rules: a value at bar t of the batch pass depends on bars
<= t only (tests/test_no_lookahead.py), so the prefix evaluation gives the batch's
decision at t exactly. ``live.window`` > 0 evaluates over the last N bars only (faster,
exact for finite-memory indicators, close for recursive ones); 0 keeps all history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import polars as pl
import structlog

from aio.errors import ConfigError
from aio.live.aggregate import BarPassthrough, ClosedBar, TickAggregator
from aio.live.broker import BRACKET_KEYS, Decision, PaperBroker, _Grow
from aio.live.journal import Journal, JournalError
from aio.records import BAR_SCHEMA

log = structlog.get_logger(__name__)

BAR_COLS = list(BAR_SCHEMA)


class History:
    """Closed bars so far, as growable columns (BAR_SCHEMA)."""

    def __init__(self) -> None:
        self.cols = {c: _Grow(np.int64) if BAR_SCHEMA[c] == pl.Int64 else _Grow() for c in BAR_COLS}

    def append(self, bar: ClosedBar) -> None:
        for c in BAR_COLS:
            self.cols[c].append(getattr(bar, c))

    def __len__(self) -> int:
        return self.cols["close"].n

    def arrays(self, start: int = 0) -> dict[str, np.ndarray]:
        return {c: g.view()[start:] for c, g in self.cols.items()}

    def frame(self, start: int = 0) -> pl.DataFrame:
        return pl.DataFrame({c: self.cols[c].view()[start:] for c in BAR_COLS}, schema=BAR_SCHEMA)


@dataclass
class Strategy:
    """What decides: a spec, its parameters (settable live), the sizer section."""

    section: dict[str, Any]  # the strategy's config section (to rebuild it with new params)
    spec: Any
    params: dict[str, Any]
    sizer: dict[str, Any] | None
    predictions: dict[str, np.ndarray] = field(default_factory=dict)


class Decider:
    def __init__(self, strat: Strategy, bt_cfg: Any, window: int = 0) -> None:
        self.s = strat
        self.bt = bt_cfg
        self.window = int(window)
        from aio.sizing.chain import parse_chain

        chain = parse_chain(strat.sizer) if strat.sizer else None
        # plain fixed sizing leaves sizes to the backtest config, as in the batch pass
        self.sized = chain is not None and not (chain.is_plain("fixed") and chain.steps[0][1].units is None)
        from aio.backtest.account import plan_for

        self.plan = plan_for(bt_cfg, bt_cfg.symbol)

    def decide(self, hist: History, paused: bool = False, flatten: bool = False) -> tuple[Decision, Any]:
        from aio.strategy import signals

        n = len(hist)
        start = max(0, n - self.window) if self.window else 0
        arrays = hist.arrays(start)
        sig = signals(self.s.spec, arrays, self.s.params, extra=None)
        bt = self.bt
        if self.sized:
            from aio.sizing import size_signals

            frame = hist.frame(start)
            rates = None
            if self.plan is not None and self.plan.kind != "none":
                from aio.instruments import conversion_rates

                rates = conversion_rates(self.plan, frame)
            sig, bt = size_signals(self.s.sizer, frame, sig, self.bt, None, rates=rates)
        when = [bool(o.when[-1]) and not paused for o in sig.orders]
        price = [float(o.price[-1]) if o.price is not None else float("nan") for o in sig.orders]
        br: dict[str, float] = {}
        if sig.brackets is not None:
            for k in BRACKET_KEYS:
                a = getattr(sig.brackets, k)
                if a is not None:
                    br[k] = float(a[-1])
        size = float(sig.size[-1]) if sig.size is not None else float("nan")
        steps = {k: float(v[-1]) for k, v in (sig.size_steps or {}).items()}
        return Decision(when, price, br, size, steps, flatten), (sig, bt)


@dataclass
class EngineStats:
    bars: int = 0
    recovered_bars: int = 0
    records: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    seconds: float = 0.0


class LiveEngine:
    """Drives bars through decider + broker, journaling intents before effects."""

    def __init__(self, strat: Strategy, bt_cfg: Any, journal: Journal, *, window: int = 0,
                 timeframe_ns: int | None = None, side: str = "mid", anchor: str = "utc",
                 spread_known: bool = True) -> None:
        self.strat = strat
        self.bt = bt_cfg
        self.journal = journal
        self.window = window
        self.decider = Decider(strat, bt_cfg, window)
        self.hist = History()
        self.broker: PaperBroker | None = None
        self.paused = False
        self.flatten_next = False
        self.pending_cmds: list[dict[str, Any]] = []  # accepted, applied at the next bar close
        self.on_applied: Callable[[dict[str, Any], dict[str, Any]], None] | None = None
        self.tf, self.side, self.anchor, self.spread_known = timeframe_ns, side, anchor, spread_known
        self.stats = EngineStats()
        self.position_id: str | None = None

    # -- one bar --------------------------------------------------------------------------
    def _broker(self, sig_bt: tuple) -> PaperBroker:
        if self.broker is None:
            from aio.backtest.account import plan_for

            sig, bt = sig_bt
            self.bt_eff = bt
            plan = plan_for(bt, bt.symbol)
            self.broker = PaperBroker(sig, bt, plan.kind, plan.rate)
        return self.broker

    def close_bar(self, bar: ClosedBar, *, recovering: bool = False) -> None:
        t = len(self.hist)
        self.hist.append(bar)
        intents: list[tuple[int, str, Any]] = []
        if recovering:
            # commands applied at this close come from the journal, not from the stream
            for seq, (kind, payload) in sorted(self.journal.events_of(t).items()):
                if kind == "command":
                    import json

                    self._apply(json.loads(payload), t, reply=False)
                    intents.append((seq, kind, json.loads(payload)))
        else:
            for cmd in self.pending_cmds:
                self._apply(cmd, t, reply=False)
                intents.append((len(intents), "command", cmd))
        decision, sig_bt = self.decider.decide(self.hist, self.paused, self.flatten_next)
        self.flatten_next = False
        intents.append((len(intents), "decision", decision.payload()))
        values = tuple(getattr(bar, c) for c in BAR_COLS)
        if recovering:
            self.journal.check_or_write(t, intents, effects=False)
        else:
            self.journal.write_intents(t, values, bar.last_id, intents)
        broker = self._broker(sig_bt)
        events = broker.step(bar, decision)
        seq0 = len(intents)
        effects = [(seq0 + i, kind, payload) for i, (kind, payload) in enumerate(events)]
        if recovering:
            self.journal.check_or_write(t, effects, effects=True)
        else:
            self.journal.write_effects(t, effects)
            if bar.received_ns:
                self.stats.latencies_ns.append(time.perf_counter_ns() - bar.received_ns)
            applied, self.pending_cmds = self.pending_cmds, []
            for cmd in applied:
                if self.on_applied is not None:
                    self.on_applied(cmd, self.state())
        self.stats.bars += 1

    # -- control ----------------------------------------------------------------------------
    def _apply(self, cmd: dict[str, Any], t: int, reply: bool) -> None:
        op = cmd["cmd"]
        if op == "pause":
            self.paused = True
        elif op == "resume":
            self.paused = False
        elif op == "flatten":
            self.flatten_next = True
            self.paused = True
        elif op == "set":
            self.strat.params = {**self.strat.params, **cmd["params"]}
            self.strat.spec = _respec(self.strat.section, self.strat.params)
        elif op == "reload":
            from aio.strategy import load_spec

            spec = load_spec(cmd["section"])
            self.strat.section, self.strat.spec, self.strat.params = cmd["section"], spec, dict(spec.params)
        self.decider = Decider(self.strat, self.bt, self.window)

    def state(self) -> dict[str, Any]:
        b = self.broker
        return {"bars": len(self.hist), "paused": self.paused, "params": dict(self.strat.params),
                "strategy": self.strat.spec.name, "position": b.pos if b else 0.0,
                "trades": b.n_closed if b else 0,
                "last_bar_close": int(self.hist.cols["ts_init"].view()[-1]) if len(self.hist) else None,
                "pending_commands": len(self.pending_cmds)}

    # -- recovery and the loop --------------------------------------------------------------
    def recover(self) -> str | None:
        """Re-run the journaled bars; returns the source position to resume after."""
        jbars = self.journal.bars()
        last = None
        for jb in jbars:
            bar = ClosedBar(*jb.values, last_id=jb.last_id)
            bar.ts_event, bar.ts_init, bar.ticks = int(bar.ts_event), int(bar.ts_init), int(bar.ticks)
            self.close_bar(bar, recovering=True)
            last = jb.last_id
        self.stats.recovered_bars = len(jbars)
        if jbars:
            log.info("resumed from the journal", bars=len(jbars), position=last, path=str(self.journal.path))
        return last

    def aggregator(self, kind: str):
        if kind == "bars":
            return BarPassthrough()
        if not self.tf:
            raise ConfigError("ticks need a bar timeframe: set bars.timeframe (e.g. 1m)")
        return TickAggregator(self.tf, self.side, self.anchor, self.spread_known)

    def run(self, source: Any, control: Any = None, clock_close_ms: int = 0) -> EngineStats:
        from aio import progress

        t0 = time.perf_counter()
        after = self.recover()
        source.open(after)
        agg = None
        reads = 0
        # a replay knows its length: a bar with ETA; a stream: a running count
        total = getattr(getattr(source, "frame", None), "height", None)
        meter = progress.task(f"paper ({type(source).__name__})", total=total, unit="records",
                              initial=getattr(source, "pos", 0) if total else 0)
        try:
            while True:
                if control is not None:
                    control.poll(self)
                batch = source.read()
                if batch is None:
                    if clock_close_ms and agg is not None and hasattr(agg, "close_due"):
                        due = agg.close_due(time.time_ns(), clock_close_ms * 1_000_000, time.perf_counter_ns())
                        for bar in due:
                            self.close_bar(bar)
                        if due:
                            source.ack(due[-1].last_id)
                    continue
                reads += 1
                self.journal._maybe_die("read", reads)  # fault injection: mid-bar, ticks read, nothing journaled
                meter.advance(len(batch))
                if agg is None:
                    agg = self.aggregator(batch.kind)
                    if len(self.hist):
                        # records of bars already journaled (re-delivered) must not form a bar again
                        last = int(self.hist.cols["ts_event"].view()[-1])
                        if hasattr(agg, "closed_open"):
                            agg.closed_open = last
                        else:
                            agg.last_open = last
                self.stats.records += len(batch)
                closed = agg.push(batch.frame, batch.ids, batch.received_ns, end=batch.end)
                for bar in closed:
                    self.close_bar(bar)
                if closed:
                    source.ack(closed[-1].last_id)
                    self.journal._maybe_die("ack", len(self.hist) - 1)
                if batch.end:
                    eos = batch.meta.get("eos_id") if batch.meta else None
                    if eos:
                        source.ack(eos)
                    break
        finally:
            meter.close()
        if agg is not None and (agg.late or agg.dropped):
            log.warning("ticks not used", late=agg.late, bad_price=agg.dropped)
        self.stats.seconds = time.perf_counter() - t0
        return self.stats

    def result(self):
        if self.broker is None:
            return None
        return self.broker.result()


def _respec(section: dict[str, Any], params: dict[str, Any]):
    from aio.strategy import load_spec

    return load_spec({**section, "params": {**(section.get("params") or {}), **params}})


def check_journal_matches(journal: Journal, strat_name: str, config_hash: str) -> None:
    """A journal belongs to one command: another strategy or config in the same folder is refused."""
    meta = journal.meta()
    if meta.get("config_hash") and meta["config_hash"] != config_hash:
        raise JournalError(
            f"journal {journal.path} was written by another configuration (hash {meta['config_hash']}, now "
            f"{config_hash}, strategy {meta.get('strategy')}); resume with the same command or choose a new hydra.run.dir")


def make_engine(strategy: dict[str, Any], bt_cfg: Any, journal_path: Any, *, sizer: dict[str, Any] | None = None,
                window: int = 0, timeframe: str = "1m", side: str = "mid", anchor: str = "utc",
                symbol: str | None = "EURUSD") -> LiveEngine:
    """An engine from plain values (tests, benchmarks); the pipeline builds the same from the config."""
    from aio.bars import parse_timeframe
    from aio.strategy import load_spec

    import dataclasses

    spec = load_spec(strategy)
    strat = Strategy(dict(strategy), spec, dict(spec.params), sizer)
    if symbol:
        bt_cfg = dataclasses.replace(bt_cfg, symbol=symbol)
    return LiveEngine(strat, bt_cfg, Journal(journal_path), window=window, timeframe_ns=parse_timeframe(timeframe),
                      side=side, anchor=anchor)
