"""Dataset tests: no lookahead for every row, labels against plain-loop references,
sessions against known DST dates, splits with embargo, the store, cache and loaders."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import polars as pl
import pytest

from aio.dataset import (
    ChartDataModule,
    ChartDataset,
    build_dataset,
    compute_labels,
    dataset_config,
)
from aio.dataset.build import compute_rows
from aio.dataset.features import REGIMES, regime, session_flags, time_features
from aio.dataset.splits import time_splits, walk_forward
from aio.errors import ConfigError
from aio.indicators import compute_indicator_set
from aio.records import NS_PER_MINUTE, Bars
from aio.render import CandleRenderer, CandlesConfig, IndicatorSpec, PlotlyRenderer, decode_png

INDICATORS = {"name": "test", "entries": [
    {"alias": "rsi_14", "fn": "RSI", "params": {"timeperiod": 14}},
    {"alias": "ema_20", "fn": "EMA", "params": {"timeperiod": 20}},
    {"alias": "bb", "fn": "BBANDS", "params": {"timeperiod": 20, "nbdevup": 2.0, "nbdevdn": 2.0}},
]}


def walk_frame(n: int, seed: int, start: str = "2024-03-07T20:00") -> pl.DataFrame:
    """M1 bars of a seeded random walk, Mon-Fri only (weekend gaps like FX)."""
    rng = np.random.default_rng(seed)
    t0 = np.datetime64(start, "ns").astype(np.int64)
    ts = t0 + np.arange(3 * n, dtype=np.int64) * NS_PER_MINUTE
    weekday = (ts // (86_400 * 10**9) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    ts = ts[weekday < 5][:n]
    c = 1.08 + np.cumsum(rng.normal(0, 1e-4, n))
    o = np.r_[c[0], c[:-1]] + rng.normal(0, 1e-5, n)
    return pl.DataFrame({
        "ts_event": ts, "ts_init": ts + NS_PER_MINUTE, "open": o,
        "high": np.maximum(o, c) + np.abs(rng.normal(0, 5e-5, n)),
        "low": np.minimum(o, c) - np.abs(rng.normal(0, 5e-5, n)), "close": c,
        "volume": rng.integers(1, 300, n).astype(np.float64), "ticks": rng.integers(1, 60, n),
        "spread_mean": np.abs(rng.normal(1.5e-5, 4e-6, n)),
    })


def make_bars(frame: pl.DataFrame) -> Bars:
    return Bars(frame, "EURUSD", "1m", synthetic=True)


def perturb_after(frame: pl.DataFrame, t: int, seed: int) -> pl.DataFrame:
    """Every price, volume, tick count and spread of bars after ``t`` replaced by another path."""
    other = walk_frame(frame.height, seed + 1000)
    shift = float(frame["close"][t]) - float(other["close"][t]) + 0.003  # a jump right after t
    keep = np.arange(frame.height) <= t
    cols = {}
    for c in ("open", "high", "low", "close"):
        cols[c] = np.where(keep, frame[c].to_numpy(), other[c].to_numpy() + shift)
    for c in ("volume", "ticks", "spread_mean"):
        cols[c] = np.where(keep, frame[c].to_numpy(), other[c].to_numpy() * 3)
    return frame.with_columns([pl.Series(k, v) for k, v in cols.items()])


SMALL_DATASET = {
    "stride": 7, "horizons": [3, 10], "atr_period": 14,
    "features": {"return_lags": [1, 5, 20], "vol_window": 10, "volume_window": 20},
    "regime": {"lookback": 20, "baseline": 100},
    "triple_barrier": {"enabled": True, "take_profit_atr": 1.5, "stop_loss_atr": 1.0, "max_bars": 12},
    "progress": False,
}


def small_renderer() -> CandleRenderer:
    return CandleRenderer(CandlesConfig(width=64, height=64, bars=24, volume=True,
                                        overlays=[IndicatorSpec("EMA", {"timeperiod": 10})],
                                        oscillators=[IndicatorSpec("RSI", {"timeperiod": 7})], osc_range=[0, 100]))


def rows_of(frame: pl.DataFrame, cfg, renderer):
    bars = make_bars(frame)
    return compute_rows(bars, compute_indicator_set(frame, INDICATORS), cfg, renderer)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_no_row_uses_bars_after_its_decision_bar():
    frame = walk_frame(640, seed=1)
    cfg = dataset_config(SMALL_DATASET)
    r = small_renderer()
    base = rows_of(frame, cfg, r)
    images = base.images(r)
    assert len(base.ends) > 60
    for k, t in enumerate(base.ends.tolist()):
        alt = rows_of(perturb_after(frame, t, seed=k), cfg, r)
        assert same(alt.ends[: k + 1], base.ends[: k + 1]), f"row {k}: the row set before t changed"
        assert alt.images(r, [k])[0] == images[k], f"row {k} (bar {t}): image changed"
        for name, col in base.features.items():
            assert same(alt.features[name][k : k + 1], col[k : k + 1]), f"row {k}: feature {name} changed"
        for name, col in base.meta.items():
            assert alt.meta[name][k] == col[k], f"row {k}: metadata {name} changed"
        # The perturbation did reach the future: some label moved.
        assert any(not same(alt.labels[n][k : k + 1], base.labels[n][k : k + 1]) for n in base.labels)


def test_labels_use_exactly_their_horizon():
    frame = walk_frame(400, seed=2)
    cfg = dataset_config(SMALL_DATASET)
    base = rows_of(frame, cfg, small_renderer())
    from aio.render.base import compute_indicator_outputs

    atr = next(iter(compute_indicator_outputs(IndicatorSpec("ATR", {"timeperiod": 14}), base.arrays).values()))
    for t in base.ends.tolist():
        ref = compute_labels(base.arrays, atr, np.array([t]), cfg, 1e-4)
        for h in (3, 10):
            beyond = make_bars(perturb_after(frame, t + h, seed=t)).frame
            arr = {c: beyond[c].to_numpy() for c in ("open", "high", "low", "close", "volume", "spread_mean")}
            got = compute_labels(arr, atr, np.array([t]), cfg, 1e-4)
            for name in (f"fwd_ret_pips_{h}", f"fwd_ret_atr_{h}", f"fwd_net_pips_{h}", f"dir_{h}"):
                assert same(got[name], ref[name]), f"bar {t}: {name} read past t+{h}"
            at = make_bars(perturb_after(frame, t + h - 1, seed=t)).frame
            arr = {c: at[c].to_numpy() for c in ("open", "high", "low", "close", "volume", "spread_mean")}
            moved = compute_labels(arr, atr, np.array([t]), cfg, 1e-4)
            assert not same(moved[f"fwd_ret_pips_{h}"], ref[f"fwd_ret_pips_{h}"]), f"bar {t}: t+{h} not read"
        beyond = make_bars(perturb_after(frame, t + 12, seed=t)).frame
        arr = {c: beyond[c].to_numpy() for c in ("open", "high", "low", "close", "volume", "spread_mean")}
        got = compute_labels(arr, atr, np.array([t]), cfg, 1e-4)
        for name in ("tb_label", "tb_bars", "tb_ret_pips"):
            assert same(got[name], ref[name])


def test_labels_match_plain_loops():
    frame = walk_frame(500, seed=3)
    cfg = dataset_config({**SMALL_DATASET, "dead_zone": 0.3})
    rows = rows_of(frame, cfg, small_renderer())
    a, pip = rows.arrays, 1e-4
    import talib  # outside reference for ATR

    atr = talib.ATR(a["high"], a["low"], a["close"], timeperiod=14)
    for k, t in enumerate(rows.ends.tolist()):
        s = a["spread_mean"][t]
        for h in (3, 10):
            r = a["close"][t + h] - a["close"][t]
            assert rows.labels[f"fwd_ret_pips_{h}"][k] == pytest.approx(r / pip, abs=1e-9)
            assert rows.labels[f"fwd_ret_atr_{h}"][k] == pytest.approx(r / atr[t], rel=1e-9)
            dz = 0.3 * atr[t]
            want = 2 if r - s > dz else (0 if -r - s > dz else 1)
            assert rows.labels[f"dir_{h}"][k] == want
        up, dn = a["close"][t] + 1.5 * atr[t], a["close"][t] - 1.0 * atr[t]
        label, bars_, exit_ = 0, 12, a["close"][t + 12]
        for j in range(1, 13):
            if a["low"][t + j] <= dn:
                label, bars_, exit_ = -1, j, dn
                break
            if a["high"][t + j] >= up:
                label, bars_, exit_ = 1, j, up
                break
        assert (rows.labels["tb_label"][k], rows.labels["tb_bars"][k]) == (label, bars_), f"bar {t}"
        assert rows.labels["tb_ret_pips"][k] == pytest.approx((exit_ - a["close"][t] - s) / pip, abs=1e-9)
    # Rows whose horizon passes the data end are dropped, not filled.
    n = frame.height
    assert rows.ends[-1] + 12 <= n - 1 and rows.ends[-1] + 7 + 12 > n - 1
    labels = np.concatenate([rows.labels[f"dir_{h}"] for h in (3, 10)])
    assert set(np.unique(labels).tolist()) == {0, 1, 2}


def utc_ns(s: str) -> int:
    return int(datetime.fromisoformat(s).replace(tzinfo=timezone.utc).timestamp()) * 10**9


@pytest.mark.parametrize("when, asia, london, newyork", [
    ("2024-03-05T07:30", 1, 0, 0),   # London winter: opens 08:00 UTC; Tokyo 00:00-09:00 UTC
    ("2024-03-05T08:00", 1, 1, 0),
    ("2024-03-05T12:30", 0, 1, 0),   # New York (EST) opens 13:00 UTC
    ("2024-03-05T13:00", 0, 1, 1),
    ("2024-03-20T12:30", 0, 1, 1),   # US on DST since 10 Mar, UK not yet: NY opens 12:00 UTC
    ("2024-03-20T16:59", 0, 1, 1),
    ("2024-03-20T17:00", 0, 0, 1),   # London (GMT) closes 17:00 UTC
    ("2024-07-02T07:00", 1, 1, 0),   # UK summer time: London opens 07:00 UTC
    ("2024-07-02T16:00", 0, 0, 1),   # ... and closes 16:00 UTC
    ("2024-07-02T21:00", 0, 0, 0),   # NY (EDT) closes 21:00 UTC
    ("2024-07-06T10:00", 0, 0, 0),   # Saturday
])
def test_session_flags_follow_local_clocks(when, asia, london, newyork):
    f = session_flags(np.array([utc_ns(when)]))
    assert (f["session_asia"][0], f["session_london"][0], f["session_newyork"][0]) == (asia, london, newyork)
    assert f["session_overlap"][0] == london * newyork


def test_cyclic_time_features():
    f = time_features(np.array([utc_ns("2024-03-04T06:00"), utc_ns("2024-03-07T00:00")]))  # Mon 06:00, Thu 00:00
    assert f["hour_sin"][0] == pytest.approx(1.0) and f["hour_cos"][0] == pytest.approx(0.0, abs=1e-12)
    assert f["hour_cos"][1] == pytest.approx(1.0)
    week = 2 * np.pi * (3 + 0) / 7
    assert f["dow_sin"][1] == pytest.approx(np.sin(week)) and f["dow_cos"][1] == pytest.approx(np.cos(week))


def test_regime_rule_on_constructed_segments():
    rng = np.random.default_rng(4)
    from aio.dataset.config import RegimeConfig

    cfg = RegimeConfig(lookback=30, baseline=300)
    base = rng.normal(0, 1e-4, 300)  # the baseline period: ordinary noise
    trend = np.full(60, 1e-4) + rng.normal(0, 1e-4, 60)  # steady drift, ordinary volatility
    noise = rng.normal(0, 1e-4, 60)
    wild = rng.normal(0, 4e-4, 60)
    calm = rng.normal(0, 2e-5, 60)
    steps = np.concatenate([base, trend, noise, wild, calm])
    close = 1.1 * np.exp(np.cumsum(steps))
    code = regime(close, cfg)
    ends = {"trending": 359, "ranging": 419, "volatile": 479, "quiet": 539}
    for name, i in ends.items():
        assert REGIMES[code[i]] == name, (name, REGIMES[code[i]])
    assert code[cfg.lookback - 1] == -1  # warm-up


def test_time_splits_keep_an_embargo_and_folds_go_forward():
    bar_index = np.arange(100, 100 + 5 * 400, 5)
    from aio.dataset.config import SplitConfig

    blocks = time_splits(bar_index, SplitConfig(), embargo=60)
    tr, va, te = blocks["train"], blocks["val"], blocks["test"]
    assert tr.stop <= va.start and va.stop <= te.start
    assert bar_index[va.start] - bar_index[tr.stop - 1] - 1 >= 60
    assert bar_index[te.start] - bar_index[va.stop - 1] - 1 >= 60
    assert bar_index[va.start] - bar_index[tr.stop] - 1 < 60  # purged no more than needed
    folds = walk_forward(bar_index, te.start, 4, "expanding", 60)
    assert len(folds) == 4
    for j, f in enumerate(folds):
        assert f["train"].start == 0
        assert bar_index[f["val"].start] - bar_index[f["train"].stop - 1] - 1 >= 60
        assert f["val"].stop <= te.start
        if j:
            assert f["val"].start == folds[j - 1]["val"].stop  # consecutive, non-overlapping val blocks
    rolling = walk_forward(bar_index, te.start, 4, "rolling", 60)
    for j in range(1, 4):  # a rolling fold trains on the block its predecessor validated on
        assert rolling[j]["train"].start == folds[j - 1]["val"].start
        assert rolling[j]["val"].as_list() == folds[j]["val"].as_list()
    with pytest.raises(ConfigError, match="embargo_bars"):
        _ = dataset_config({"horizons": [30], "split": {"embargo_bars": 10}}).embargo


def test_build_store_reuse_and_loaders(tmp_path):
    frame = walk_frame(900, seed=5)
    bars = make_bars(frame)
    ind = compute_indicator_set(frame, INDICATORS)
    r = small_renderer()
    infos = {}
    for fmt in ("lance", "parquet"):
        cfg = dataset_config({**SMALL_DATASET, "split": {"folds": 2}, "store": {"format": fmt}})
        info = build_dataset(bars, ind, cfg, r, tmp_path / "run")
        assert not info.reused and info.path.parent == tmp_path / "run" / "dataset"
        again = build_dataset(bars, ind, cfg, r, tmp_path / "other_run", cache_dir=tmp_path / "run" / "dataset")
        assert again.reused and again.path == info.path and again.hash == info.hash
        infos[fmt] = info
    assert infos["lance"].hash != infos["parquet"].hash
    info = infos["lance"]
    rows = rows_of(frame, dataset_config(SMALL_DATASET), r)
    assert info.rows == len(rows.ends)
    assert set(info.columns["features"]) == set(rows.features) and "ind_rsi_14" in info.columns["features"]
    assert info.splits["train"] + info.splits["val"] + info.splits["test"] + info.splits["gap"] == info.rows
    assert len(info.splits["folds"]) == 2

    # Both stores hold the same rows; images are the renderer's PNGs.
    images = rows.images(r)
    for fmt, inf in infos.items():
        ds = ChartDataset(inf.path, "all", label="dir_10", normalize=False, float_images=False)
        assert len(ds) == info.rows
        ks = [5, 0, len(ds) - 1, 5]
        items = ds.__getitems__(ks)
        for k, item in zip(ks, items):
            assert int(item["row"]) == k
            assert np.array_equal(item["image"].numpy().transpose(1, 2, 0), decode_png(images[k])), fmt
            assert int(item["label"]) == rows.labels["dir_10"][k]
            feats = np.array([rows.features[n][k] for n in ds.feature_names])
            assert np.allclose(item["features"].numpy(), np.nan_to_num(feats), equal_nan=True)
        single = ds[3]
        assert int(single["row"]) == 3
        assert np.array_equal(single["image"].numpy().transpose(1, 2, 0), decode_png(images[3]))

    # A changed config is a different dataset; the same config reuses it.
    cfg2 = dataset_config({**SMALL_DATASET, "stride": 9})
    other = build_dataset(bars, ind, cfg2, r, tmp_path / "run")
    assert other.hash != info.hash and not other.reused

    dm = ChartDataModule(info.path, batch_size=8, label="dir_3")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 3, 64, 64) and batch["image"].dtype.is_floating_point
    assert batch["features"].shape[0] == 8 and batch["label"].shape == (8,)
    train_t = dm.datasets["train"].ts_init.numpy()
    val_t = dm.datasets["val"].ts_init.numpy()
    test_t = dm.datasets["test"].ts_init.numpy()
    assert train_t.max() < val_t.min() and val_t.max() < test_t.min()
    fold = ChartDataModule(info.path, batch_size=4, fold=1)
    fold.setup()
    assert fold.datasets["train"].ts_init.max() < fold.datasets["val"].ts_init.min()


def test_dataset_refuses_a_renderer_without_images(tmp_path):
    frame = walk_frame(300, seed=6)
    with pytest.raises(ConfigError, match="renderer=candles"):
        build_dataset(make_bars(frame), {}, dataset_config({}), PlotlyRenderer(), tmp_path)


def test_input_hash_ignores_last_bit_noise_but_not_a_price_point():
    from aio.dataset.store import input_hash

    frame = walk_frame(300, seed=7)
    base = input_hash(frame, {"symbol": "EURUSD"}, {}, {"c": 1})
    # One-ulp noise, as parallel float sums produce run to run.
    noisy = frame.with_columns(pl.Series("volume", np.nextafter(frame["volume"].to_numpy(), np.inf)))
    assert input_hash(noisy, {"symbol": "EURUSD"}, {}, {"c": 1}) == base
    close = frame["close"].to_numpy().copy()
    close[150] += 1e-5  # one point
    moved = frame.with_columns(pl.Series("close", close))
    assert input_hash(moved, {"symbol": "EURUSD"}, {}, {"c": 1}) != base
    assert input_hash(frame, {"symbol": "EURUSD"}, {}, {"c": 2}) != base
    assert input_hash(frame, {"symbol": "EURUSD"}, {"x": np.arange(300.0)}, {"c": 1}) != base
