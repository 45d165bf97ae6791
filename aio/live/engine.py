"""The paper engine: closed bars -> the strategy's rules -> the paper broker, journaled.

At each bar close the decision is the batch pass's value at that bar, computed without
re-reading the history: :class:`aio.strategy.incremental.IncrementalSignals` carries
TA-Lib indicators on TA-Lib's streaming handles and evaluates the rule expressions with
the batch evaluator over the few last bars they read (bit-identical to
:func:`aio.strategy.signals` on the history; audited against it every
``live.audit_every`` bars and at the end). With a sizer chain (history-dependent shadow
backtests), ``live.window`` > 0 or ``live.incremental=false`` the batch backend itself is
run over the bars so far (or the last N) at each close; a value at bar t of the batch
pass depends on bars <= t only (tests/test_no_lookahead.py), so the prefix evaluation
gives the batch's decision at t exactly. The broker is the backtest's stepped
:class:`aio.backtest.broker.Broker` (through :class:`aio.live.broker.PaperBroker`).
"""

from __future__ import annotations

import json
import operator
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import polars as pl
import structlog

from aio.errors import ConfigError
from aio.live.aggregate import BarPassthrough, ClosedBar, TickAggregator
from aio.backtest.broker import Decisions
from aio.live.broker import PaperBroker
from aio.live.journal import Journal, JournalError
from aio.strategy.incremental import Grow
from aio.records import BAR_SCHEMA

log = structlog.get_logger(__name__)

BAR_COLS = list(BAR_SCHEMA)
_BAR_VALUES = operator.attrgetter(*BAR_COLS)  # a ClosedBar's values in BAR_COLS order


class History:
    """Closed bars so far, as growable columns (BAR_SCHEMA)."""

    def __init__(self) -> None:
        self.cols = {c: Grow(np.int64) if BAR_SCHEMA[c] == pl.Int64 else Grow() for c in BAR_COLS}

    def append(self, values: tuple) -> None:
        """One bar's values in BAR_COLS order."""
        for g, v in zip(self.cols.values(), values):
            g.append(v)

    def extend(self, rows: list[tuple]) -> None:
        """Bars' values in BAR_COLS order, one column write per read rather than per bar."""
        for g, col in zip(self.cols.values(), zip(*rows)):
            g.extend(col)

    def __len__(self) -> int:
        return self.cols["close"].n

    def arrays(self, start: int = 0, end: int | None = None) -> dict[str, np.ndarray]:
        return {c: g.view()[start:end] for c, g in self.cols.items()}

    def frame(self, start: int = 0, end: int | None = None) -> pl.DataFrame:
        return pl.DataFrame({c: self.cols[c].view()[start:end] for c in BAR_COLS}, schema=BAR_SCHEMA)


@dataclass
class Strategy:
    """What decides: a spec, its parameters (settable live), the sizer section."""

    section: dict[str, Any]  # the strategy's config section (to rebuild it with new params)
    spec: Any
    params: dict[str, Any]
    sizer: dict[str, Any] | None
    predictions: dict[str, np.ndarray] = field(default_factory=dict)


class Decider:
    """The decision at each close: incrementally (:class:`aio.strategy.incremental.IncrementalSignals`,
    O(1) per bar, audited against the batch every ``audit_every`` bars) or, with a sizer chain,
    ``live.window`` or ``live.incremental=false``, by the batch backend over the history."""

    def __init__(self, strat: Strategy, bt_cfg: Any, window: int = 0, incremental: bool = True,
                 audit_every: int = 1000) -> None:
        self.s = strat
        self.bt = bt_cfg
        self.window = int(window)
        self.audit_every = int(audit_every)
        from aio.sizing.chain import parse_chain

        chain = parse_chain(strat.sizer) if strat.sizer else None
        # plain fixed sizing leaves sizes to the backtest config, as in the batch pass
        self.sized = chain is not None and not (chain.is_plain("fixed") and chain.steps[0][1].units is None)
        from aio.backtest.account import plan_for

        self.plan = plan_for(bt_cfg, bt_cfg.symbol)
        self.inc = None
        self.template: tuple | None = None
        if incremental and not self.sized and not self.window:
            from aio.strategy.incremental import IncrementalSignals

            self.inc = IncrementalSignals(strat.spec, strat.params)

    def decide(self, hist: History, k: int = 1, paused: bool = False,
               flatten: bool = False) -> tuple[list[Decisions], Any]:
        """Decisions at the last ``k`` closes of ``hist`` (``flatten``: the controller's, at the first)."""
        from aio.strategy import signals

        n = len(hist)
        if self.inc is None:
            out = [self._decide_batch(hist, n - k + i + 1, paused, flatten and i == 0) for i in range(k)]
            return [d for d, _ in out], out[0][1]
        arrays = hist.arrays()
        if self.template is None:  # the order slots and bracket kinds, laid out as the batch pass does
            self.template = (signals(self.s.spec, arrays, self.s.params), self.bt)
        if self.inc.n < n - k:  # a decider rebuilt by a command catches up on the history, in one pass
            self.inc.step({c: a[: n - k] for c, a in arrays.items()}, n - k - self.inc.n)
        out = []
        for i, d in enumerate(self.inc.step(arrays, k)):
            when = np.array([w and not paused for w in d.when] + [flatten and i == 0], dtype=np.bool_)
            out.append(Decisions(when, np.array(d.price + [np.nan]), **d.brackets))
        if self.audit_every and n // self.audit_every > (n - k) // self.audit_every:
            self.inc.audit(arrays)
        return out, self.template

    def audit(self, hist: History) -> None:
        if self.inc is not None and self.inc.n:
            self.inc.audit(hist.arrays())

    def _decide_batch(self, hist: History, end: int, paused: bool, flatten: bool) -> tuple[Decisions, Any]:
        """The batch backend over the bars before ``end`` (or the last ``window`` of them)."""
        from aio.strategy import signals

        start = max(0, end - self.window) if self.window else 0
        arrays = hist.arrays(start, end)
        sig = signals(self.s.spec, arrays, self.s.params, extra=None)
        bt = self.bt
        if self.sized:
            from aio.sizing import size_signals

            frame = hist.frame(start, end)
            rates = None
            if self.plan is not None and self.plan.kind != "none":
                from aio.instruments import conversion_rates

                rates = conversion_rates(self.plan, frame)
            sig, bt = size_signals(self.s.sizer, frame, sig, self.bt, None, rates=rates)
        return at_close(sig, paused, flatten), (sig, bt)


def at_close(sig: Any, paused: bool, flatten: bool) -> Decisions:
    """The last bar's decisions out of whole-series Signals, with the controller's pause and
    flatten (the extra last slot)."""
    d = Decisions.at(sig, len(sig.orders[0].when) - 1)
    d.when = np.append(d.when & (not paused), flatten)
    d.price = np.append(d.price, np.nan)
    return d


@dataclass
class EngineStats:
    bars: int = 0
    recovered_bars: int = 0
    records: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    seconds: float = 0.0


class LiveEngine:
    """Drives bars through decider + broker; one journal transaction per source read, before its ack."""

    def __init__(self, strat: Strategy, bt_cfg: Any, journal: Journal, *, window: int = 0, incremental: bool = True,
                 audit_every: int = 1000,
                 timeframe_ns: int | None = None, side: str = "mid", anchor: str = "utc",
                 spread_known: bool = True) -> None:
        self.strat = strat
        self.bt = bt_cfg
        self.journal = journal
        self.decider_opts = {"window": window, "incremental": incremental, "audit_every": audit_every}
        self.decider = Decider(strat, bt_cfg, **self.decider_opts)
        self.hist = History()
        self.broker: PaperBroker | None = None
        self.paused = False
        self.flatten_next = False
        self.pending_cmds: list[dict[str, Any]] = []  # accepted, applied at the next bar close
        self.applied: list[tuple[dict, dict]] = []  # (command, state at its close), answered once journaled
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
            self.broker = PaperBroker(sig, bt, plan)
        return self.broker

    def close_bars(self, bars: list[ClosedBar]) -> None:
        """The bars one source read closed: decided together (each from the bars up to it),
        stepped in order, then all journaled in one transaction; only after it are latencies
        taken and control replies sent."""
        if not bars:
            return
        rows = self._close(bars)
        self.journal.write_bars(rows)
        now = time.perf_counter_ns()
        self.stats.latencies_ns.extend(now - b.received_ns for b in bars if b.received_ns)
        applied, self.applied = self.applied, []
        for cmd, state in applied:
            if self.on_applied is not None:
                self.on_applied(cmd, state)

    def _close(self, bars: list[ClosedBar], journaled: dict[int, tuple[str, str]] | None = None) -> list[tuple]:
        """Bars t0.. closed: the commands due at t0, the decisions, the broker's steps. Returns the
        journal rows (``journaled``: recovery of one bar, its journaled events, checked instead)."""
        t0 = len(self.hist)
        if journaled is not None:  # commands applied at this close come from the journal, not the stream
            cmds = [json.loads(p) for _, (kind, p) in sorted(journaled.items()) if kind == "command"]
        else:
            cmds, self.pending_cmds = self.pending_cmds, []
        for cmd in cmds:
            self._apply(cmd, t0, reply=False)
        values = list(map(_BAR_VALUES, bars))
        self.hist.extend(values)
        decisions, sig_bt = self.decider.decide(self.hist, len(bars), self.paused, self.flatten_next)
        self.flatten_next = False
        broker = self._broker(sig_bt)
        rows = []
        for i, (bar, decision) in enumerate(zip(bars, decisions)):
            t = t0 + i
            events: list[tuple[int, str, Any]] = [(j, "command", cmd) for j, cmd in enumerate(cmds if i == 0 else ())]
            events.append((len(events), "decision", broker.decision_text(decision)))
            for kind, payload in broker.step(bar, decision):
                events.append((len(events), kind, payload))
            self.stats.bars += 1
            if journaled is not None:
                self.journal.check(t, journaled, events)
            else:
                if cmds and i == 0:  # answered with the state at this close, once the bar is journaled
                    state = self.state(t + 1)
                    self.applied += [(cmd, state) for cmd in cmds]
                self.journal._maybe_die("decided", t)
            rows.append((t, values[i], bar.last_id, events))
        return rows

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
        self.decider = Decider(self.strat, self.bt, **self.decider_opts)

    def state(self, bars: int | None = None) -> dict[str, Any]:
        """The engine's state after ``bars`` bars (default: all so far; the broker must be there)."""
        b = self.broker
        n = len(self.hist) if bars is None else bars
        return {"bars": n, "paused": self.paused, "params": dict(self.strat.params),
                "strategy": self.strat.spec.name, "position": b.pos if b else 0.0,
                "trades": b.n_closed if b else 0,
                "last_bar_close": int(self.hist.cols["ts_init"].view()[n - 1]) if n else None,
                "pending_commands": len(self.pending_cmds)}

    # -- recovery and the loop --------------------------------------------------------------
    def recover(self) -> str | None:
        """Re-run the journaled bars; returns the source position to resume after."""
        jbars = self.journal.bars()
        journaled = self.journal.all_events() if jbars else {}
        last = None
        for jb in jbars:
            bar = ClosedBar(*jb.values, last_id=jb.last_id)
            bar.ts_event, bar.ts_init, bar.ticks = int(bar.ts_event), int(bar.ts_init), int(bar.ticks)
            self._close([bar], journaled.get(jb.t, {}))
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
                        self.close_bars(due)
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
                self.close_bars(closed)
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
        self.decider.audit(self.hist)  # every decision of the run against one batch pass over its bars
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
                window: int = 0, incremental: bool = True, audit_every: int = 1000, timeframe: str = "1m", side: str = "mid", anchor: str = "utc",
                symbol: str | None = "EURUSD") -> LiveEngine:
    """An engine from plain values (tests, benchmarks); the pipeline builds the same from the config."""
    from aio.bars import parse_timeframe
    from aio.strategy import load_spec

    import dataclasses

    spec = load_spec(strategy)
    strat = Strategy(dict(strategy), spec, dict(spec.params), sizer)
    if symbol:
        bt_cfg = dataclasses.replace(bt_cfg, symbol=symbol)
    return LiveEngine(strat, bt_cfg, Journal(journal_path), window=window, incremental=incremental,
                      audit_every=audit_every, timeframe_ns=parse_timeframe(timeframe),
                      side=side, anchor=anchor)
