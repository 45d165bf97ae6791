"""A planted edge for the synthetic source: ground truth that discovery must find.

``data.plant`` names a rule in the strategy language (indicator bindings as in
``conf/strategy/*.yaml`` and a ``when`` expression). While the ticks are generated the
rule is evaluated at every close of the plant's bars (``plant.timeframe``, UTC-anchored,
built from the generated ticks exactly as ``aio.bars.ticks_to_bars`` builds them, mid
side). A bar where it holds is an *event*: over the next ``horizon_bars`` bars the log
price drifts by ``log(1 ± drift_pips * pip / close)`` on top of the usual noise, in equal
steps. While a drift runs, the rule does not start another one (events never overlap).

The unconditional drift stays zero: every planted step adds to a *debt* that is paid
back, in the opposite direction, on the bars outside events at ``debt / repay_bars`` per
bar (and fully by the last bar: ``debt / bars left`` near the end). The planted path is a
pure sum of these steps (no mean reversion on it), so over the whole series the plant's
steps add to exactly zero and buy-and-hold gains nothing from it. No event starts in the
last ``2 * horizon_bars + repay_bars`` bars, so each drift completes and is repaid before the end
at the usual rate (never a rush to repay in the last bars).

Causality: the decision at bar t reads the bars of the last ``lookback_bars`` up to t
(their closes are known at t's close) and moves only bars after t. The generator works
block by block: a block is generated with the events known so far, the rule is evaluated,
and from the first new event on the block is generated again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np

from aio.config import param
from aio.errors import ConfigError
from aio.records import NS_PER_MINUTE

RULE_ID = "plant"


@dataclass
class PlantConfig:
    """A known edge planted into synthetic ticks (data.plant)."""

    indicators: dict[str, Any] = param(default_factory=dict, help="indicator bindings, as a strategy's indicators:")
    when: str = param("", help="the event rule in the strategy language, e.g. crossover(rsi, 30)")
    direction: Literal["long", "short"] = param("long", help="the drift's direction after an event")
    drift_pips: float = param(10.0, gt=0, le=10_000, help="total drift after an event, in pips")
    horizon_bars: int = param(20, ge=1, le=100_000, help="bars the drift is spread over")
    timeframe: str = param("1m", help="bars the rule reads (whole minutes, UTC-anchored; match bars.timeframe)")
    lookback_bars: int = param(1000, ge=2, help="history the rule sees at each close (indicator warm-up)")
    repay_bars: int = param(720, ge=1, help="the planted drift is paid back over about this many later non-event bars")

    def __post_init__(self) -> None:
        compile_plant(self)  # errors name data.plant.* at config time


def compile_plant(plant: PlantConfig, path: str = "data.plant"):
    """The plant's rule as a validated one-rule :class:`aio.strategy.StrategySpec`."""
    from aio.bars import parse_timeframe
    from aio.strategy import load_spec

    if not str(plant.when).strip():
        raise ConfigError(f"config key {path}.when is empty: name the event rule, e.g. when: \"crossover(rsi, 30)\"")
    try:
        tf = parse_timeframe(plant.timeframe)
    except ValueError as exc:
        raise ConfigError(f"config key {path}.timeframe={plant.timeframe!r}: {exc}") from None
    if tf % NS_PER_MINUTE:
        raise ConfigError(f"config key {path}.timeframe={plant.timeframe!r} must be whole minutes (1m, 5m, 1h...): "
                          "the simulator works on a one-minute grid")
    section = {"name": "plant", "indicators": plant.indicators,
               "rules": [{"id": RULE_ID, "when": plant.when, "direction": plant.direction}]}
    try:
        spec = load_spec(section, path)
    except ConfigError as exc:
        msg = str(exc).replace(f"{path}.rules[0].when", f"{path}.when").replace(f"{path}.rules[0]", f"{path}.when")
        raise ConfigError(msg) from None
    if spec.uses_model():
        raise ConfigError(f"config key {path}.when={plant.when!r} reads model.* outputs; a plant may use prices and indicators only")
    return spec


def describe(plant: PlantConfig) -> str:
    return (f"planted edge: {plant.direction} {plant.drift_pips:g} pips over {plant.horizon_bars} "
            f"{plant.timeframe} bars after `{plant.when}`")


@dataclass
class PlantPath:
    """The planted component of the log mid and the events that made it."""

    y: np.ndarray  # per minute: planted log-price offset (added to the noise path)
    events: np.ndarray  # plant-bar indices where the rule fired and a drift started
    bar_ts_init: np.ndarray  # close time (ns) of every plant bar
    bar_close: np.ndarray  # the plant bars' closes as the rule saw them
    steps: np.ndarray  # per plant bar: planted log step (drift > 0 on events, repayment elsewhere)
    planted_log: float  # sum of the drift steps
    repaid_log: float  # sum of the repayment steps (negative of planted_log at the end)
    evaluations: int = 0  # rule evaluations the generator made (blocks + re-runs after events)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def event_ts_init(self) -> np.ndarray:
        return self.bar_ts_init[self.events]


def plant_path(
    plant: PlantConfig,
    *,
    minutes: np.ndarray,
    counts: np.ndarray,
    x_noise: np.ndarray,
    tick_mid: Callable[[np.ndarray, int, int], np.ndarray],
    tick_volume: np.ndarray,
    pip: float,
    block_bars: int = 64,
) -> PlantPath:
    """Generate the planted path causally.

    ``minutes``: UTC minute opens (ns); ``counts``: ticks per minute; ``x_noise``: the
    noise log path per minute (the planted one is ``x_noise + y``); ``tick_mid(x, a, b)``
    the quote mid of ticks ``[a, b)`` given the per-minute log path ``x`` (filled at
    least up to those ticks' minutes); ``tick_volume`` per tick (for the rule's volume).
    """
    from aio.bars import parse_timeframe
    from aio.strategy.rules import signals

    spec = compile_plant(plant)
    tf = parse_timeframe(plant.timeframe)
    n = len(minutes)
    tick_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    hm = np.flatnonzero(counts > 0)  # minutes that have ticks (and so belong to a bar)
    keys = minutes[hm] // tf
    new = np.r_[True, keys[1:] != keys[:-1]] if len(hm) else np.zeros(0, bool)
    bar_of_hm = np.cumsum(new) - 1
    nb = int(new.sum())
    first_pos = np.flatnonzero(new)
    last_pos = np.r_[first_pos[1:] - 1, len(hm) - 1].astype(np.int64)
    bar_m0 = hm[first_pos]
    bar_t0 = tick_start[bar_m0]
    bar_t1 = tick_start[hm[last_pos] + 1]
    bar_ts = keys[first_pos] * tf + tf
    n_min = np.bincount(bar_of_hm, minlength=nb)
    bar_of_minute = np.full(n, -1, dtype=np.int64)
    bar_of_minute[hm] = bar_of_hm
    volume = np.add.reduceat(tick_volume, bar_t0) if nb else np.zeros(0)

    y = np.zeros(n)
    x = x_noise.copy()
    o, h, lo_, c = (np.full(nb, np.nan) for _ in range(4))
    steps = np.zeros(nb)
    debt_after = np.zeros(nb)
    sign = 1.0 if plant.direction == "long" else -1.0
    horizon, repay = int(plant.horizon_bars), int(plant.repay_bars)
    # Events start before this bar, so each drift completes and its debt is repaid at the usual
    # rate (debt / repay_bars a bar). Allowing events until 2 * horizon bars before the end
    # made the last bars repay the whole debt in a few minutes: a crash in the final stretch
    # (where discovery's holdout lies) that no rule could foresee.
    last_allowed = nb - 2 * horizon - repay
    events: list[int] = []
    state = {"last": -1, "until": -1, "step": 0.0}
    evaluations = 0

    def fill(cur: int, end: int) -> None:
        debt = debt_after[cur - 1] if cur > 0 else 0.0
        last, until, step = state["last"], state["until"], state["step"]
        for j in range(cur, end):
            if last >= 0 and last < j <= until:
                d = step
            else:
                d = -debt / min(repay, nb - j)
            debt += d
            steps[j] = d
            debt_after[j] = debt
        m_a = 0 if cur == 0 else int(bar_m0[cur])
        m_b = int(bar_m0[end]) if end < nb else n
        bm = bar_of_minute[m_a:m_b]
        d_min = np.where(bm >= 0, steps[np.maximum(bm, 0)] / n_min[np.maximum(bm, 0)], 0.0)
        y0 = y[m_a - 1] if m_a > 0 else 0.0
        y[m_a:m_b] = y0 + np.cumsum(d_min)
        x[m_a:m_b] = x_noise[m_a:m_b] + y[m_a:m_b]
        ta, tb = int(bar_t0[cur]), int(bar_t1[end - 1])
        q = tick_mid(x, ta, tb)
        starts = bar_t0[cur:end] - ta
        o[cur:end] = q[starts]
        h[cur:end] = np.maximum.reduceat(q, starts)
        lo_[cur:end] = np.minimum.reduceat(q, starts)
        c[cur:end] = q[bar_t1[cur:end] - ta - 1]

    bs = 0
    while bs < nb:
        be = min(nb, bs + block_bars)
        cur = bs
        while cur < be:
            fill(cur, be)
            w0 = max(0, be - plant.lookback_bars)
            arrays = {"open": o[w0:be], "high": h[w0:be], "low": lo_[w0:be], "close": c[w0:be], "volume": volume[w0:be]}
            when = signals(spec, arrays).orders[0].when
            evaluations += 1
            cand = np.flatnonzero(when[cur - w0:]) + cur
            cand = cand[(cand > state["until"]) & (cand < last_allowed)]
            if not len(cand):
                break
            b = int(cand[0])
            events.append(b)
            state.update(last=b, until=b + horizon, step=float(np.log1p(sign * plant.drift_pips * pip / c[b])) / horizon)
            cur = b + 1
        bs = be
    drift = np.zeros(nb, dtype=bool)
    for b in events:
        drift[b + 1:b + 1 + horizon] = True
    return PlantPath(
        y=y, events=np.asarray(events, dtype=np.int64), bar_ts_init=bar_ts, bar_close=c, steps=steps,
        planted_log=float(steps[drift].sum()), repaid_log=float(steps[~drift].sum()), evaluations=evaluations,
    )


def summary(plant: PlantConfig, path: PlantPath, pip: float) -> dict[str, Any]:
    """What every output says about the plant (MarketData.meta['plant'])."""
    return {
        "description": describe(plant),
        "indicators": plant.indicators,
        "when": plant.when,
        "direction": plant.direction,
        "drift_pips": plant.drift_pips,
        "horizon_bars": plant.horizon_bars,
        "timeframe": plant.timeframe,
        "events": int(len(path.events)),
        "event_ts_init": [int(t) for t in path.event_ts_init],
        "bars": int(len(path.bar_ts_init)),
        "planted_log_drift": path.planted_log,
        "repaid_log_drift": path.repaid_log,
        "net_log_drift": path.planted_log + path.repaid_log,
    }


def event_mask(plant_meta: dict[str, Any], ts_init: np.ndarray) -> np.ndarray:
    """Bars (by close time ``ts_init``) where the plant fired, from ``MarketData.meta['plant']``.

    Only meaningful on bars of the plant's timeframe; other bars get no events.
    """
    return np.isin(np.asarray(ts_init, dtype=np.int64), np.asarray(plant_meta.get("event_ts_init", []), dtype=np.int64))


def event_overlap(entries: np.ndarray, plant_meta: dict[str, Any], ts_init: np.ndarray,
                  tolerance_bars: int = 2) -> dict[str, Any]:
    """How well a strategy's entry decisions (bool per bar, decided at that bar's close)
    line up with the planted events: an entry at or up to ``tolerance_bars`` after an event
    counts as on it.

    ``events_hit``: share of events with such an entry; ``entries_on_events``: share of
    entries that are on an event.
    """
    ev = np.flatnonzero(event_mask(plant_meta, ts_init))
    ent = np.flatnonzero(np.asarray(entries, dtype=bool))
    if not len(ev) or not len(ent):
        return {"events": int(len(ev)), "entries": int(len(ent)), "events_hit": 0.0, "entries_on_events": 0.0,
                "tolerance_bars": tolerance_bars}
    # for each entry, the latest event at or before it
    k = np.searchsorted(ev, ent, side="right") - 1
    on = (k >= 0) & (ent - ev[np.maximum(k, 0)] <= tolerance_bars)
    hit = np.unique(k[on])
    return {"events": int(len(ev)), "entries": int(len(ent)), "events_hit": float(len(hit) / len(ev)),
            "entries_on_events": float(on.mean()), "tolerance_bars": tolerance_bars}
