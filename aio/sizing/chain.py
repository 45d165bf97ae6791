"""A sizer section -> a chain of steps -> per-bar sizes on the Signals.

Config (``conf/sizer/*.yaml``)::

    name: vol_target            # the base step; its keys sit beside the name
    risk_pct: 0.5
    then:                       # later steps, in order, each with its own keys
      - {name: drawdown_guard, start_pct: 5, max_pct: 20}
    limits: {max_leverage: 30, lot_step: 1000}   # always applied last

Sizes that depend on equity or on past trades are resolved without lookahead and
without iterating the simulator: one *shadow* backtest at a reference size gives
every trade's decision bar, exit bar and profit per unit (costs scale with size);
then trades are sized in decision order, each seeing only the realised equity of
trades that closed at or before its decision bar. A second (the real) backtest uses
the sizes. This is exact while entries/exits do not depend on size and costs are
proportional (percent or per-unit commission; a fixed cash-per-order commission is
charged per shadow order and scaled, a small approximation).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import structlog

from aio.config import build
from aio.errors import ConfigError
from aio.sizing.steps import LimitsConfig, SizerBase, SizingInputs, StepDef, constraints

log = structlog.get_logger(__name__)

NO_SIZER = (None, "", "none")
MAX_SHADOW_RUNS = 300  # each run settles at least one more entry: exact, not cheap for Kelly


@dataclass
class Chain:
    name: str
    steps: list[tuple[StepDef, Any]]
    limits: LimitsConfig

    @property
    def needs_history(self) -> bool:
        return any(s.needs_history(c) for s, c in self.steps) or self.limits.max_leverage is not None

    @property
    def step_names(self) -> list[str]:
        names, seen = [], {}
        for s, _ in self.steps:
            seen[s.name] = seen.get(s.name, 0) + 1
            names.append(s.name if seen[s.name] == 1 else f"{s.name}_{seen[s.name]}")
        return names + ["constraints"]

    def is_plain(self, step: str) -> bool:
        """Only ``step`` with default limits (the simulator can do it natively)."""
        return len(self.steps) == 1 and self.steps[0][0].name == step and self.limits == LimitsConfig()


def _step_names() -> list[str]:
    from aio.registry import registry

    return registry.names("sizer")


def _step(name: Any, where: str) -> StepDef:
    """The sizer step registered as ``name`` (kind ``sizer``: built-ins and plugins alike)."""
    from aio.registry import registry

    names = _step_names()
    if name not in names:
        import difflib

        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"config key {where}={name!r} is not a sizer step.{hint} Steps: {', '.join(names)}")
    st = registry.get("sizer", name)
    if not isinstance(st, StepDef) or not (isinstance(st.config, type) and issubclass(st.config, SizerBase)):
        raise ConfigError(
            f"sizer plugin {name!r} must be an aio.sizing.steps.StepDef whose config extends "
            f"aio.sizing.steps.SizerBase (got {type(st).__name__}); see docs/optimize.md, Sizers"
        )
    return st


def parse_chain(section: Mapping[str, Any] | None) -> Chain | None:
    """Validate a ``sizer`` section; None when there is no sizer (the backtest's qty)."""
    if section is None:
        return None
    if dataclasses.is_dataclass(section):
        section = dataclasses.asdict(section)
    section = dict(section)
    name = section.get("name")
    if name in NO_SIZER:
        return None
    base = _step(name, "sizer.name")
    cfg = build(base.config, section, "sizer")
    steps: list[tuple[StepDef, Any]] = [(base, cfg)]
    for i, item in enumerate(cfg.then):
        where = f"sizer.then[{i}]"
        if not isinstance(item, Mapping) or "name" not in item:
            raise ConfigError(f"config key {where} must be a mapping with a 'name' (one of: {', '.join(_step_names())})")
        st = _step(item["name"], f"{where}.name")
        sub = build(st.config, {k: v for k, v in item.items() if k not in ("then", "limits")}, where)
        steps.append((st, sub))
    return Chain(str(name), steps, cfg.limits)


# -- evaluation ---------------------------------------------------------------------------


def _run_chain(chain: Chain, x: SizingInputs, idx: np.ndarray) -> list[np.ndarray]:
    size = np.asarray(x.base_units[idx], dtype=np.float64)
    out = []
    for st, cfg in chain.steps:
        size = np.asarray(st.fn(size, x, cfg, idx), dtype=np.float64)
        out.append(size)
    out.append(constraints(size, x, chain.limits, idx))
    return out


def _base_units(bt: Any, unit_price: np.ndarray, equity: np.ndarray) -> np.ndarray:
    """The backtest's own quantity in units; ``unit_price``: one unit's value in account currency."""
    qty_type = getattr(bt, "qty_type", "fixed")
    qty = float(getattr(bt, "qty", 1.0))
    close = unit_price
    with np.errstate(divide="ignore", invalid="ignore"):
        if qty_type == "cash":
            return np.nan_to_num(qty / close, nan=0.0, posinf=0.0)
        if qty_type == "percent_of_equity":
            return np.nan_to_num(qty / 100.0 * equity / close, nan=0.0, posinf=0.0)
    return np.full(len(close), qty)


def _rolling_trade_stats(n: int, exit_bar: np.ndarray, pnl_unit: np.ndarray, lookback: int) -> tuple[np.ndarray, ...]:
    """Win rate, mean win, mean |loss| per unit over the last ``lookback`` trades closed
    at or before each bar (trades ordered by exit)."""
    order = np.argsort(exit_bar, kind="stable")
    xb, u = exit_bar[order], pnl_unit[order]
    k = np.searchsorted(xb, np.arange(n), side="right")  # trades closed by bar t
    lo = np.maximum(k - lookback, 0)
    win = (u > 0).astype(np.float64)
    loss = (u < 0).astype(np.float64)
    cw = np.concatenate([[0.0], np.cumsum(win)])
    cl = np.concatenate([[0.0], np.cumsum(loss)])
    sw = np.concatenate([[0.0], np.cumsum(np.where(u > 0, u, 0.0))])
    sl = np.concatenate([[0.0], np.cumsum(np.where(u < 0, -u, 0.0))])
    cnt = (k - lo).astype(np.float64)
    nw, nl = cw[k] - cw[lo], cl[k] - cl[lo]
    with np.errstate(divide="ignore", invalid="ignore"):
        win_rate = np.where(cnt > 0, nw / cnt, np.nan)
        avg_win = np.where(nw > 0, (sw[k] - sw[lo]) / nw, 0.0)
        avg_loss = np.where(nl > 0, (sl[k] - sl[lo]) / nl, 0.0)
    return win_rate, avg_win, avg_loss, cnt


def shadow_trades(frame: Any, signals: Any, bt: Any, ref_units: float | np.ndarray, rates: Any = None) -> dict[str, np.ndarray]:
    """Run the strategy at ``ref_units`` per order (0: entry skipped): decision bar, exit
    bar and profit per unit of every closed trade."""
    from aio.backtest import run_backtest

    sig = copy.copy(signals)
    n = len(signals.orders[0].when) if signals.orders else 0
    sig.size = np.broadcast_to(np.asarray(ref_units, dtype=np.float64), (n,)).copy()
    sig.size_steps = {}
    result = run_backtest(frame, sig, bt, rates=rates)
    return trade_bars(result, frame, bt)


def trade_bars(result: Any, frame: Any, bt: Any) -> dict[str, np.ndarray]:
    """Per closed trade: decision bar (whose close decided the entry), exit bar, P&L per unit."""
    raw = getattr(result, "raw_trades", None)
    if raw is not None:  # the compiled loop's own table: it records each trade's decision bar
        from aio.backtest import engine as E

        closed = raw[:, E.T_XSIG] != E.EXIT_OPEN  # a trade still open at the end has no outcome yet
        r = raw[closed]
        qty = np.abs(r[:, E.T_QTY])
        with np.errstate(divide="ignore", invalid="ignore"):
            unit = np.where(qty > 0, r[:, E.T_PNL] / np.where(qty > 0, qty, 1.0), 0.0)
        return {"decision": r[:, E.T_DEC].astype(np.int64), "exit": r[:, E.T_XBAR].astype(np.int64), "pnl_unit": unit}
    t = result.trades
    if t is None or t.height == 0:
        z = np.zeros(0, dtype=np.int64)
        return {"decision": z, "exit": z, "pnl_unit": np.zeros(0)}
    cols = set(t.columns)
    if "entry_bar" in cols and "exit_bar" in cols:
        entry = t.get_column("entry_bar").to_numpy().astype(np.int64)
        exit_ = t.get_column("exit_bar").to_numpy().astype(np.int64)
    else:
        ts = frame.get_column("ts_event").to_numpy()
        ecol = "entry_time" if "entry_time" in cols else "entry_ts"
        xcol = "exit_time" if "exit_time" in cols else "exit_ts"
        entry = np.searchsorted(ts, t.get_column(ecol).to_numpy().astype(np.int64), side="right") - 1
        exit_ = np.searchsorted(ts, t.get_column(xcol).to_numpy().astype(np.int64), side="right") - 1
    pnl = t.get_column("pnl" if "pnl" in cols else "net_profit").to_numpy().astype(np.float64)
    qty = np.abs(t.get_column("qty" if "qty" in cols else "size").to_numpy().astype(np.float64))
    closed = exit_ >= 0
    on_close = bool(getattr(bt, "process_orders_on_close", False))
    decision = entry if on_close else entry - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = np.where(qty > 0, pnl / np.where(qty > 0, qty, 1.0), 0.0)
    return {"decision": np.maximum(decision[closed], 0), "exit": exit_[closed], "pnl_unit": unit[closed]}


def size_signals(
    section: Mapping[str, Any] | Chain | None,
    frame: Any,
    signals: Any,
    bt: Any,
    predictions: Mapping[str, np.ndarray] | None = None,
    rates: Any = None,
) -> tuple[Any, Any]:
    """Fill ``signals.size`` and ``signals.size_steps`` for the bars in ``frame``.

    Returns ``(signals, bt)``; ``bt`` may change when the simulator sizes natively
    (a plain percent-of-equity sizer becomes ``qty_type=percent_of_equity``, the
    same semantics TradingView applies).
    """
    chain = section if isinstance(section, Chain) else parse_chain(section)
    if chain is None:
        return signals, bt
    if chain.is_plain("fixed") and chain.steps[0][1].units is None:
        return signals, bt  # the backtest's own quantity, exactly as Pine exports it
    if chain.is_plain("percent_of_equity"):
        bt = dataclasses.replace(bt, qty_type="percent_of_equity", qty=float(chain.steps[0][1].percent))
        return signals, bt
    close = np.ascontiguousarray(frame.get_column("close").to_numpy(), dtype=np.float64)
    n = len(close)
    # budgets are in account currency: one unit costs close x contract x rate of it
    unit_price = close * bt.instrument_spec().contract_size * (rates[1] if rates is not None else 1.0)
    initial = float(getattr(bt, "initial_capital", 100_000.0))
    lookback = max([c.lookback for s, c in chain.steps if s.name == "kelly"] or [50])
    base_eq = np.full(n, initial)
    x = SizingInputs(
        close=close,
        high=np.ascontiguousarray(frame.get_column("high").to_numpy(), dtype=np.float64),
        low=np.ascontiguousarray(frame.get_column("low").to_numpy(), dtype=np.float64),
        initial_capital=initial,
        equity=base_eq.copy(),
        peak=base_eq.copy(),
        win_rate=np.full(n, np.nan),
        avg_win=np.zeros(n),
        avg_loss=np.zeros(n),
        n_closed=np.zeros(n),
        predictions={k: np.asarray(v) for k, v in (predictions or {}).items()},
        base_units=_base_units(bt, unit_price, base_eq),
        to_account=unit_price / close,
        qty_step=bt.instrument_spec().qty_step,
        qty_min=bt.instrument_spec().qty_min,
    )
    history = chain.needs_history or getattr(bt, "qty_type", "fixed") == "percent_of_equity"
    if not history:
        steps = _run_chain(chain, x, np.arange(n))
    else:
        ref = float(bt.qty) if getattr(bt, "qty_type", "fixed") == "fixed" else 1.0
        entry_bars = np.zeros(n, dtype=bool)
        for o in signals.orders:
            if o.action == "entry":
                entry_bars |= np.asarray(o.when, dtype=bool)
        # A size of 0 skips an entry, which changes which trades exist (a skipped reversal
        # leaves the old position open): re-run the shadow with the skips until the skip
        # pattern is stable, so the real run has exactly the shadow's trades.
        # Win rate and payoff come from the strategy's paper trades (every entry taken), so
        # a Kelly sizer that sat out can see the edge come back.
        paper = shadow_trades(frame, signals, bt, ref, rates)
        x.win_rate, x.avg_win, x.avg_loss, x.n_closed = _rolling_trade_stats(n, paper["exit"], paper["pnl_unit"], lookback)
        skip = np.zeros(n, dtype=bool)
        for it in range(MAX_SHADOW_RUNS):
            tr = paper if it == 0 else shadow_trades(frame, signals, bt, np.where(skip, 0.0, ref), rates)
            x.equity, x.peak = base_eq.copy(), base_eq.copy()
            x.base_units = _base_units(bt, unit_price, base_eq)
            sizes = _size_trades(chain, x, bt, tr)
            x.equity, x.peak = _equity_path(n, initial, tr, sizes)
            x.base_units = _base_units(bt, unit_price, x.equity)
            steps = _run_chain(chain, x, np.arange(n))
            new_skip = entry_bars & ~(steps[-1] > 0)
            if np.array_equal(new_skip, skip):
                break
            skip = new_skip
        else:
            log.warning("sizer: skipped entries did not settle; sizes are approximate", runs=MAX_SHADOW_RUNS)
    out = copy.copy(signals)
    out.size_steps = dict(zip(chain.step_names, steps))
    out.size = steps[-1]
    return out, bt


def _equity_path(n: int, initial: float, tr: dict[str, np.ndarray], sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pnl_at = np.zeros(n)
    np.add.at(pnl_at, np.clip(tr["exit"], 0, n - 1), sizes * tr["pnl_unit"])
    equity = initial + np.cumsum(pnl_at)
    return equity, np.maximum.accumulate(equity)


def _size_trades(chain: Chain, x: SizingInputs, bt: Any, tr: dict[str, np.ndarray]) -> np.ndarray:
    """Each trade's final size, in decision order; equity from trades closed by then."""
    m = len(tr["decision"])
    sizes = np.zeros(m)
    if m == 0:
        return sizes
    order = np.lexsort((np.arange(m), tr["decision"]))
    by_exit = np.argsort(tr["exit"], kind="stable")
    sized = np.zeros(m, dtype=bool)
    realised, peak, p = 0.0, float(x.initial_capital), 0
    pending: list[int] = []  # exited by now but not yet sized (same-bar edge): added when sized
    for j in order:
        d = int(tr["decision"][j])
        while p < m and tr["exit"][by_exit[p]] <= d:
            pending.append(int(by_exit[p]))
            p += 1
        still = []
        for i in pending:
            if sized[i]:
                realised += sizes[i] * tr["pnl_unit"][i]
                peak = max(peak, x.initial_capital + realised)
            else:
                still.append(i)
        pending = still
        eq = x.initial_capital + realised
        x.equity[d], x.peak[d] = eq, max(peak, eq)
        if getattr(bt, "qty_type", "fixed") == "percent_of_equity":
            x.base_units[d] = _base_units(bt, x.close[d : d + 1] * x.to_account[d : d + 1], x.equity[d : d + 1])[0]
        sizes[j] = _run_chain(chain, x, np.array([d]))[-1][0]
        sized[j] = True
    return sizes


def describe(chain: Chain) -> dict[str, Any]:
    return {
        "name": chain.name,
        "steps": [{"step": s.name, **dataclasses.asdict(c)} for s, c in chain.steps],
        "limits": dataclasses.asdict(chain.limits),
    }


def config_types() -> dict[str, type[SizerBase]]:
    from aio.registry import registry

    return {name: registry.get("sizer", name).config for name in registry.names("sizer")}
