"""The rules bar by bar: each close costs O(1), every value bit-identical to :func:`signals`.

:func:`aio.strategy.signals` evaluates a strategy over whole series. A stream needs only
the last bar's values, once per close. Re-evaluating the whole history at each close is
exact but O(bars so far); a trailing window is not exact for TA-Lib's recursive or
running-sum indicators (EMA, RSI, ATR, even SMA's running sum carries rounding from the
first bar). :class:`IncrementalSignals` splits the work by what each piece reads:

- TA-Lib indicators are carried by TA-Lib's own streaming handles (``talib.stream``:
  opened on the history, then ``update`` per closed bar; TA-Lib documents each value as
  bit-identical to its Function API and aio checks it, below). Until a handle can open
  (too little history) or where one cannot be used (another indicator kind, a non-finite
  input), that indicator is computed by the Function API over its whole input history: the
  batch computation itself.
- Expressions (indicator expressions and inputs, rule conditions and prices, exit levels)
  are elementwise operations, fixed shifts and fixed-length rolling windows
  (:func:`aio.strategy.evaluate.lookback`); they are evaluated by the batch evaluator over
  the last ``lookback + 1`` bars of every series, which gives the same last value.

Each value is stored, so the decisions so far form whole series again: :meth:`audit`
compares them with one batch :func:`signals` pass over the same bars and raises
:class:`IncrementalMismatch` naming the first bar and series that differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import structlog

from aio.errors import AioError
from aio.strategy.evaluate import _truth, evaluate, lookback
from aio.strategy.expr import names
from aio.strategy.rules import _resolve, exit_distances, price_env, signals

log = structlog.get_logger(__name__)

BASE = ("open", "high", "low", "close", "volume")


class IncrementalMismatch(AioError):
    """A value computed bar by bar differs from the batch evaluation of the same bars."""


class Grow:
    """A growable 1-d array (capacity doubles: appending bar by bar stays O(1))."""

    def __init__(self, dtype: Any = np.float64) -> None:
        self.a = np.zeros(64, dtype=dtype)
        self.n = 0

    def _room(self, k: int) -> None:
        if self.n + k > self.a.shape[0]:
            grown = np.zeros(2 * (self.n + k), dtype=self.a.dtype)
            grown[: self.n] = self.a[: self.n]
            self.a = grown

    def append(self, v: Any) -> None:
        if self.n == self.a.shape[0]:
            self._room(1)
        self.a[self.n] = v
        self.n += 1

    def extend(self, v: np.ndarray) -> None:
        k = len(v)
        self._room(k)
        self.a[self.n: self.n + k] = v
        self.n += k

    def view(self) -> np.ndarray:
        return self.a[: self.n]

    def tail(self, w: int) -> np.ndarray:
        return self.a[max(0, self.n - w): self.n]


def stream_api() -> Any | None:
    """TA-Lib's stateful streaming module (ta-lib >= 0.8), or None where the installed one lacks it."""
    try:
        from talib import stream
    except ImportError:  # pragma: no cover - TA-Lib is a dependency
        return None
    return stream if hasattr(stream, "Stream") else None


@dataclass
class _Indicator:
    """One indicator binding, carried bar by bar."""

    alias: str
    fn: str
    outputs: tuple[str, ...]
    first: str
    params: dict[str, Any]
    inputs: list[tuple[str, str]]  # (TA-Lib input name, AST key of its expression or "" for a price)
    talib: bool
    handle: Any = None
    batch_only: bool = False  # a handle refused a value: the Function API from then on
    series: dict[str, Grow] = field(default_factory=dict)  # input histories by input name


@dataclass
class Decision:
    when: list[bool]
    price: list[float]
    brackets: dict[str, float]


class IncrementalSignals:
    """A strategy's Signals, one closed bar at a time (see the module docstring)."""

    def __init__(self, spec: Any, params: Mapping[str, Any] | None = None, *, use_stream: bool = True) -> None:
        from aio.indicators import get_indicator
        from aio.indicators.talib_defs import talib_defs

        self.spec = spec
        self.params = {**spec.params, **(params or {})}
        self.scalars = {k: v for k, v in self.params.items() if not isinstance(v, str)}
        self.stream = stream_api() if use_stream else None
        self.series: dict[str, Grow] = {}
        self.n = 0
        talib_names = talib_defs()
        keys: list[str] = []
        self.steps: list[tuple[str, Any]] = []
        for alias in spec.indicator_order:
            b = spec.indicators[alias]
            if b.expr is not None:
                self.steps.append(("expr", alias))
                keys.append(f"ind:{alias}")
                continue
            idef = get_indicator(b.fn)
            inputs = []
            for inp in idef.inputs:
                src = b.inputs.get(inp)
                key = f"ind:{alias}:in:{src}" if src is not None else ""
                if key:
                    keys.append(key)
                inputs.append((inp, key))
            p = idef.resolve_params({k: _resolve(v, self.params) for k, v in b.params.items()})
            ind = _Indicator(alias, idef.name, tuple(idef.outputs), b.output or idef.outputs[0], p, inputs,
                             talib=talib_names.get(idef.name) is idef)
            self.steps.append(("ind", ind))
        for r in spec.rules:
            keys.append(f"rule:{r.id}:when")
            if r.price is not None:
                keys.append(f"rule:{r.id}:price")
        ex = spec.exit
        self.levels = [k for k in ex.PRICE_KEYS if getattr(ex, k) is not None]
        keys += [f"exit:{k}" for k in self.levels]
        self.atr: _Indicator | None = None
        self.dists: dict[str, float] = {}
        if not self.levels:
            vals = {k: _resolve(getattr(ex, k), self.params) for k in ("stop_atr", "take_atr", "stop_pct", "take_pct",
                                                                        "atr_length")}
            self.dists = {k: vals[k] for k in ("stop_atr", "take_atr", "stop_pct", "take_pct")}
            if vals["stop_atr"] or vals["take_atr"]:
                self.atr = _Indicator("ATR", "ATR", ("real",), "real", {"timeperiod": int(vals["atr_length"])},
                                      [("high", ""), ("low", ""), ("close", "")], talib=True)
        used = set().union(*(names(spec.ast(k)) for k in keys)) | {i for st in self.steps if st[0] == "ind"
                                                                  for i, key in st[1].inputs if not key}
        self.derived = bool(used & {"hl2", "hlc3", "ohlc4"})  # else the prices are all the env needs
        spans = [lookback(spec.ast(k), self.scalars) for k in keys]
        # None: some length is not a constant; such an expression sees the whole history
        self.window = None if any(s is None for s in spans) else max(spans, default=0) + 1
        self.has_brackets = bool(self.levels) or any(self.dists.get(k) for k in self.dists)
        self.decisions: dict[str, Grow] = {}

    # -- closed bars ------------------------------------------------------------------------
    def step(self, bars: Mapping[str, np.ndarray], k: int = 1) -> list[Decision]:
        """The decisions at the last ``k`` bars of ``bars`` (whole histories, ``k`` bars more than
        the last call). A value at bar i reads bars <= i only, so ``k`` bars closed together are
        decided in one pass: the expressions' numpy work is shared by them."""
        n = len(bars["close"])
        if k < 1 or n != self.n + k:
            raise IncrementalMismatch(f"step got {n} bars after {self.n} and {k} new: feed every closed bar once, "
                                      "in order")
        self.n = n
        w = n if self.window is None else min(n, self.window + k - 1)
        tails = {c: bars[c][n - w:] for c in BASE if c in bars}
        env: dict[str, Any] = price_env(tails) if self.derived else tails
        env.update(self.scalars)
        for kind, it in self.steps:
            if kind == "expr":
                self._put(it, _last(evaluate(self.spec.ast(f"ind:{it}"), env, w), k))
                env[it] = self.series[it].tail(w)
                continue
            for oname, v in self._indicator(it, env, w, k).items():
                self._put(f"{it.alias}.{oname}", v)
                env[f"{it.alias}.{oname}"] = self.series[f"{it.alias}.{oname}"].tail(w)
            env[it.alias] = env[f"{it.alias}.{it.first}"]
        when, price = [], []
        for r in self.spec.rules:
            when.append(_truth(evaluate(self.spec.ast(f"rule:{r.id}:when"), env, w), w)[w - k:])
            price.append(_last(evaluate(self.spec.ast(f"rule:{r.id}:price"), env, w), k).astype(np.float64)
                         if r.price is not None else np.full(k, np.nan))
        br = self._brackets(env, w, k)
        for r, wv, pv in zip(self.spec.rules, when, price):
            self._dec(f"{r.id}.when", wv.astype(np.float64))
            self._dec(f"{r.id}.price", pv)
        for key, v in br.items():
            self._dec(f"brackets.{key}", v)
        return [Decision([bool(wv[i]) for wv in when], [float(pv[i]) for pv in price],
                         {key: float(v[i]) for key, v in br.items()}) for i in range(k)]

    def _put(self, key: str, v: np.ndarray) -> None:
        g = self.series.get(key)
        if g is None:  # a condition stays boolean, as in the batch env (x[1] pads it with False, not NaN)
            g = self.series[key] = Grow(np.bool_ if v.dtype == np.bool_ else np.float64)
        g.extend(v)

    def _indicator(self, ind: _Indicator, env: Mapping[str, Any], w: int, k: int) -> dict[str, np.ndarray]:
        from aio.indicators import compute_indicator

        vals = []
        for inp, key in ind.inputs:
            x = np.asarray(_last(evaluate(self.spec.ast(key), env, w), k) if key else env[inp][w - k:], np.float64)
            ind.series.setdefault(inp, Grow()).extend(x)
            vals.append(x)
        if ind.handle is not None:
            try:
                got = [ind.handle.update(*(float(x[i]) for x in vals)) for i in range(k)]
            except Exception:  # TA-Lib refuses a non-finite bar: the batch computation from here on
                ind.handle, ind.batch_only = None, True
                log.info("indicator leaves its streaming handle", indicator=ind.alias, bar=self.n - 1)
            else:
                rows = [g if isinstance(g, tuple) else (g,) for g in got]
                return {o: np.array([r[j] for r in rows], dtype=np.float64) for j, o in enumerate(ind.outputs)}
        full = {inp: g.view() for inp, g in ind.series.items()}
        res = compute_indicator(ind.fn, full, ind.params)
        if self.stream is not None and ind.talib and not ind.batch_only:
            self._open(ind, full, res)
        return {o: np.asarray(a[len(a) - k:], dtype=np.float64) for o, a in res.items()}

    def _open(self, ind: _Indicator, full: dict[str, np.ndarray], res: dict[str, np.ndarray]) -> None:
        arrays = [full[inp] for inp, _ in ind.inputs]
        lead = np.zeros(len(arrays[0]), dtype=bool)
        for a in arrays:
            lead |= np.isnan(a)
        first = int(np.argmin(lead)) if not lead.all() else len(lead)
        if first == len(lead) or not all(np.isfinite(a[first:]).all() for a in arrays):
            return  # TA-Lib's handles are defined on finite history after the leading NaNs only
        try:
            h = getattr(self.stream, ind.fn)(*arrays, **ind.params)
        except Exception:  # InsufficientHistory: not yet
            return
        v = h.value
        got = v if isinstance(v, tuple) else (v,)
        want = tuple(float(res[o][-1]) for o in ind.outputs)
        if not _same(np.asarray(got, dtype=np.float64), np.asarray(want)):
            ind.batch_only = True  # this TA-Lib's handle disagrees with its Function API: never use it
            log.warning("TA-Lib streaming handle disagrees with the Function API; using the Function API",
                        indicator=ind.alias, handle=got, function=want)
            return
        ind.handle = h

    def _brackets(self, env: Mapping[str, Any], w: int, k: int) -> dict[str, np.ndarray]:
        if self.levels:
            out = {key: _last(evaluate(self.spec.ast(f"exit:{key}"), env, w), k).astype(np.float64)
                   for key in self.levels}
            nan = np.full(k, np.nan)
            return {"stop_long": out.get("stop_long", nan), "limit_long": out.get("take_long", nan),
                    "stop_short": out.get("stop_short", nan), "limit_short": out.get("take_short", nan)}
        if not self.has_brackets:
            return {}
        atr = self._indicator(self.atr, env, w, k)["real"] if self.atr is not None else None
        stop, take = exit_distances(self.dists, env["close"][w - k:], atr)
        return {"stop_dist": stop, "take_dist": take}

    # -- the decisions so far, checked against the batch ------------------------------------
    def _dec(self, key: str, v: np.ndarray) -> None:
        g = self.decisions.get(key)
        if g is None:
            g = self.decisions[key] = Grow()
        g.extend(v)

    def audit(self, bars: Mapping[str, np.ndarray]) -> None:
        """One batch pass over the same bars: every decision so far must be the batch's, bit for bit."""
        sig = signals(self.spec, bars, self.params)
        want: dict[str, np.ndarray] = {}
        for o in sig.orders:
            want[f"{o.id}.when"] = o.when.astype(np.float64)
            if o.price is not None:
                want[f"{o.id}.price"] = o.price
        br = sig.brackets
        if br is not None:
            for k in ("stop_long", "limit_long", "stop_short", "limit_short", "stop_dist", "take_dist"):
                if getattr(br, k) is not None:
                    want[f"brackets.{k}"] = np.asarray(getattr(br, k), dtype=np.float64)
        for key, arr in want.items():
            got = self.decisions[key].view()
            if not _same(got, arr):
                bad = int(np.flatnonzero(~((got == arr) | (np.isnan(got) & np.isnan(arr))))[0])
                raise IncrementalMismatch(
                    f"strategy {self.spec.name}: {key} at bar {bad} is {got[bad]!r} bar by bar but {arr[bad]!r} in "
                    "the batch evaluation of the same bars; set live.incremental=false (whole-history evaluation) "
                    "and report this")


def _last(v: Any, k: int) -> np.ndarray:
    """The last k values of an evaluated expression (a constant stands for every bar)."""
    if isinstance(v, np.ndarray):
        return v[len(v) - k:] if v.dtype == np.bool_ else np.asarray(v[len(v) - k:], dtype=np.float64)
    return np.full(k, float(v))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


__all__ = ["Decision", "Grow", "IncrementalMismatch", "IncrementalSignals", "stream_api"]
