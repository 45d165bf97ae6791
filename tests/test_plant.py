"""The synthetic plant: a known edge, evaluated causally while the ticks are generated."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from aio.bars import bars_from_market
from aio.config import build
from aio.data.plant import compile_plant
from aio.data.synthetic import SyntheticDataConfig, SyntheticSource, assemble, draw_noise
from aio.errors import ConfigError
from aio.strategy.rules import signals

REPO = Path(__file__).resolve().parent.parent
SHIPPED = {**yaml.safe_load((REPO / "conf" / "data" / "synthetic.yaml").read_text()),
           **{k: v for k, v in yaml.safe_load((REPO / "conf" / "data" / "synthetic_planted.yaml").read_text()).items()
              if k != "defaults"}}  # the shipped YAML inherits synthetic.yaml

# A second plant on other indicators, the other direction and another timeframe:
# the close breaking above the upper Bollinger band (5m) is followed by a fall.
BBANDS_SHORT = {
    "indicators": {
        "basis": {"fn": "SMA", "inputs": {"close": "close"}, "params": {"timeperiod": 20}},
        "sd": {"fn": "STDDEV", "inputs": {"close": "close"}, "params": {"timeperiod": 20, "nbdev": 1}},
        "upper": {"expr": "basis + 2 * sd"},
    },
    "when": "crossover(close, upper)",
    "direction": "short",
    "drift_pips": 12.0,
    "horizon_bars": 6,
    "timeframe": "5m",
}
# The plant data=synthetic_planted shipped first (the shipped one is now a CCI plant that no
# shipped strategy trades); rarer events, so its pay-back is thin, which these tests check.
RSI_LONG = {"indicators": {"rsi": {"fn": "RSI", "inputs": {"close": "close"}, "params": {"timeperiod": 14}}},
            "when": "crossover(rsi, 27)", "direction": "long", "drift_pips": 10.0, "horizon_bars": 20,
            "timeframe": "1m", "lookback_bars": 1000, "repay_bars": 720}
PLANTS = {"rsi_long_1m": RSI_LONG, "cci_long_1m_shipped": SHIPPED["plant"], "bbands_short_5m": BBANDS_SHORT}


def _cfg(plant, **over) -> SyntheticDataConfig:
    base = {k: v for k, v in SHIPPED.items() if k != "plant"}
    return build(SyntheticDataConfig, {**base, "plant": plant, **over}, "data")


def _bars(md, tf):
    f = bars_from_market(md, tf).frame
    return f, {k: f[k].to_numpy() for k in ("open", "high", "low", "close", "volume")}


@pytest.fixture(scope="module", params=sorted(PLANTS))
def planted(request):
    """(plant, planted data, the same draws without the plant), 14 days."""
    plant = PLANTS[request.param]
    cfg = _cfg(plant, seed=7)
    md = SyntheticSource(cfg).load()
    md0 = SyntheticSource(dataclasses.replace(cfg, plant=None)).load()
    return cfg.plant, md, md0


def test_events_are_where_the_rule_holds_on_the_pipelines_bars(planted):
    plant, md, _ = planted
    f, arrays = _bars(md, plant.timeframe)  # built by aio.bars, not by the generator
    ts = f["ts_init"].to_numpy()
    ev_ts = np.asarray(md.meta["plant"]["event_ts_init"])
    ev = np.searchsorted(ts, ev_ts)
    assert np.array_equal(ts[ev], ev_ts)
    when = signals(compile_plant(plant), arrays).orders[0].when
    assert when[ev].all(), "an event where the rule (evaluated on the final bars) does not hold"
    assert len(ev) >= 60  # enough for a discovery to find it in 14 days
    # events never overlap: each starts after the previous drift ended
    assert np.all(np.diff(ev) > plant.horizon_bars)


def test_forward_drift_after_events_is_the_planted_one(planted):
    plant, md, md0 = planted
    f, arrays = _bars(md, plant.timeframe)
    c = arrays["close"]
    c0 = bars_from_market(md0, plant.timeframe).frame["close"].to_numpy()
    assert len(c0) == len(c)  # same calendar, same ticks per minute
    ev = np.searchsorted(f["ts_init"].to_numpy(), md.meta["plant"]["event_ts_init"])
    n = plant.horizon_bars
    sign = 1 if plant.direction == "long" else -1
    fwd = sign * (c[ev + n] - c[ev]) / md.pip
    # measured, as a researcher would: strongly in the planted direction
    t = fwd.mean() / (fwd.std(ddof=1) / np.sqrt(len(fwd)))
    assert t > 6, (fwd.mean(), t)
    # exact, against the same draws without the plant: the difference is the drift itself
    paired = fwd - sign * (c0[ev + n] - c0[ev]) / md.pip
    assert abs(paired.mean() - plant.drift_pips) < 0.3
    assert np.all(np.abs(paired - plant.drift_pips) < 1.0)  # quotes sit on a 0.1-pip grid
    # away from events only the pay-back: thin, opposite, and it adds up to the planted total
    drifting = np.zeros(len(c), bool)
    for k in range(1, n + 1):
        drifting[ev + k] = True
    step = sign * (np.diff(c) - np.diff(c0)) / md.pip  # planted pips per bar (bar i -> i+1)
    quiet = step[~drifting[1:]]
    assert abs(step[drifting[1:]].sum() - len(ev) * plant.drift_pips) < 0.05 * len(ev) * plant.drift_pips
    assert abs(quiet.sum() + len(ev) * plant.drift_pips) < 0.05 * len(ev) * plant.drift_pips
    if plant.repay_bars >= 500:  # a long pay-back window: thinner than the drift
        assert np.median(np.abs(quiet)) < 0.5 * plant.drift_pips / n


def test_the_end_repays_at_the_usual_rate_never_in_a_rush(planted):
    """No event starts in the last 2N + repay_bars bars, so the debt left is paid off at
    debt / repay_bars a bar like everywhere else. (Events until 2N bars before the end made
    the last bars repay the whole debt in minutes: a crash inside discovery's holdout.)"""
    plant, md, md0 = planted
    c = bars_from_market(md, plant.timeframe).frame["close"].to_numpy()
    c0 = bars_from_market(md0, plant.timeframe).frame["close"].to_numpy()
    ts = bars_from_market(md, plant.timeframe).frame["ts_init"].to_numpy()
    sign = 1 if plant.direction == "long" else -1
    step = sign * (np.diff(c) - np.diff(c0)) / md.pip
    tail = 2 * plant.horizon_bars + plant.repay_bars
    assert np.searchsorted(ts, md.meta["plant"]["event_ts_init"]).max() < len(c) - tail
    payback = -step[step < 0]
    # the tail's pay-back steps are no larger than those of the rest (plus the 0.1-pip quote grid)
    assert payback.size and (-step[-tail:]).max() <= np.quantile(-step[:-tail], 0.999) + 0.2, \
        ((-step[-tail:]).max(), np.quantile(-step[:-tail], 0.999))


def test_unconditional_drift_is_zero_buy_and_hold_gains_nothing(planted):
    plant, md, md0 = planted
    p = md.meta["plant"]
    assert p["planted_log_drift"] != 0
    assert abs(p["net_log_drift"]) < 1e-12
    c = bars_from_market(md, "1m").frame["close"].to_numpy()
    c0 = bars_from_market(md0, "1m").frame["close"].to_numpy()
    # buy-and-hold over the whole series: the plant adds nothing (up to the quote grid)
    bh, bh0 = (c[-1] - c[0]) / md.pip, (c0[-1] - c0[0]) / md.pip
    assert abs(bh - bh0) < 0.2
    # while the plant moved the path by many pips in between
    assert np.abs(c - c0).max() / md.pip > 2 * plant.drift_pips


def test_buy_and_hold_over_seeds_stays_within_noise():
    gains, plain = [], []
    for seed in range(4):
        cfg = _cfg(SHIPPED["plant"], seed=seed, start="2024-03-04", end="2024-03-09")
        f, path = assemble(cfg, draw_noise(cfg))
        f0, _ = assemble(dataclasses.replace(cfg, plant=None), draw_noise(cfg))
        mid, mid0 = (f["bid"] + f["ask"]).to_numpy() / 2, (f0["bid"] + f0["ask"]).to_numpy() / 2
        gains.append((mid[-1] - mid[0]) / 1e-4)
        plain.append((mid0[-1] - mid0[0]) / 1e-4)
        assert len(path.events) > 20
    assert np.allclose(gains, plain, atol=0.2)


def test_no_lookahead_rewriting_the_future_leaves_past_events_unchanged():
    cfg = _cfg(SHIPPED["plant"], seed=3, start="2024-03-04", end="2024-03-09")
    nz = draw_noise(cfg)
    f1, p1 = assemble(cfg, nz)
    cut_bar = int(p1.events[len(p1.events) // 2]) + 3  # a few bars after a mid-series event
    cut_ts = p1.bar_ts_init[cut_bar]  # the bar closes here; minutes from here on are rewritten
    m = int(np.searchsorted(nz.minutes, cut_ts))
    rng = np.random.default_rng(99)
    later = nz.mi >= m
    other = dataclasses.replace(
        nz,
        x=np.r_[nz.x[:m], nz.x[m:] + np.cumsum(rng.normal(0, 3e-4, len(nz.x) - m))],
        bridge=np.where(later, rng.normal(0, 1e-4, len(nz.bridge)), nz.bridge),
        spread_pts=np.where(later, nz.spread_pts + 1, nz.spread_pts),
    )
    f2, p2 = assemble(cfg, other)
    past1, past2 = p1.events[p1.events <= cut_bar], p2.events[p2.events <= cut_bar]
    assert len(past1) > 10 and np.array_equal(past1, past2)
    assert np.array_equal(p1.bar_close[: cut_bar + 1], p2.bar_close[: cut_bar + 1])
    assert np.array_equal(p1.y[:m], p2.y[:m])
    n_before = int(np.searchsorted(f1["ts_event"].to_numpy(), cut_ts))
    assert f1.head(n_before).equals(f2.head(n_before))
    # the rewrite did reach the future (the check above is not vacuous)
    assert not np.array_equal(p1.events[p1.events > cut_bar], p2.events[p2.events > cut_bar])


def test_every_output_names_the_plant():
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        md = SyntheticSource(_cfg(RSI_LONG, start="2024-03-04", end="2024-03-06")).load()
    assert md.meta["plant"]["events"] < 30
    assert any(e["event"] == "the plant fired rarely" and e["log_level"] == "warning" for e in logs)
    label = md.meta["synthetic"]
    assert label.startswith("generated by aio synthetic simulator, seed=42; planted edge: long 10 pips")
    assert "crossover(rsi, 27)" in label and md.quality["synthetic"] == label
    assert md.meta["plant"]["when"] == "crossover(rsi, 27)" and md.meta["plant"]["events"] > 0
    bars = bars_from_market(md, "1m")
    assert "planted edge" in bars.meta["synthetic"]
    plain = SyntheticSource(_cfg(None, start="2024-03-04", end="2024-03-06")).load()
    assert "plant" not in plain.meta and "planted" not in plain.meta["synthetic"]


def test_unplanted_frames_are_unchanged_by_the_plant_machinery():
    cfg = _cfg(None, start="2024-03-04", end="2024-03-06")
    a = SyntheticSource(cfg).load().frame
    f, path = assemble(cfg, draw_noise(cfg))
    assert path is None and a.equals(f)


@pytest.mark.parametrize(
    "plant, match",
    [
        ({**BBANDS_SHORT, "when": "crossover(close, uper)"}, r"data\.plant\.when.*Did you mean 'upper'"),
        ({**BBANDS_SHORT, "timeframe": "30s"}, r"data\.plant\.timeframe.*whole minutes"),
        ({**BBANDS_SHORT, "when": "model.p_up > 0.6"}, r"data\.plant\.when.*model"),
        ({**BBANDS_SHORT, "direction": "both"}, r"data\.plant\.direction"),
        ({**BBANDS_SHORT, "when": ""}, r"data\.plant\.when is empty"),
        ({**BBANDS_SHORT, "drift_pips": 0}, r"data\.plant\.drift_pips"),
    ],
)
def test_plant_config_errors_name_the_key(plant, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(plant)


def test_event_overlap_of_entries_with_the_plant():
    from aio.data.plant import event_mask, event_overlap

    ts = np.arange(100, dtype=np.int64) * 60 + 60
    meta = {"event_ts_init": [int(ts[10]), int(ts[40]), int(ts[70])]}
    assert np.flatnonzero(event_mask(meta, ts)).tolist() == [10, 40, 70]
    entries = np.zeros(100, bool)
    entries[[10, 42, 55, 90]] = True  # on event 10, 2 bars after event 40, two elsewhere
    o = event_overlap(entries, meta, ts, tolerance_bars=2)
    assert o["events_hit"] == pytest.approx(2 / 3) and o["entries_on_events"] == pytest.approx(2 / 4)
    assert event_overlap(entries, meta, ts, tolerance_bars=1)["events_hit"] == pytest.approx(1 / 3)
    # the shipped plant's own rule, evaluated on the pipeline's bars, hits every event
    md = SyntheticSource(_cfg(SHIPPED["plant"], start="2024-03-04", end="2024-03-07")).load()
    f, arrays = _bars(md, "1m")
    when = signals(compile_plant(build(SyntheticDataConfig, SHIPPED, "data").plant), arrays).orders[0].when
    o = event_overlap(when, md.meta["plant"], f["ts_init"].to_numpy(), tolerance_bars=0)
    assert o["events_hit"] == 1.0 and o["entries_on_events"] > 0.8
