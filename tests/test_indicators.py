"""The indicator layer: TA-Lib registry, parameters, NaN handling, Pine mappings, sets.

Reference values come from outside aio: TA-Lib itself (called directly), Pine's own
published definitions transcribed as plain loops, and real EURUSD bars.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
import talib
from talib import abstract

from aio.errors import ConfigError, ExportError, UnknownPluginError
from aio.indicators import (
    IndicatorSetConfig,
    PineCall,
    compute_indicator,
    compute_indicator_set,
    get_indicator,
    register,
)
from aio.indicators.sets import BUILTIN_SETS, as_set_config, set_config_type
from aio.registry import Registry

REPO = Path(__file__).resolve().parent.parent
TV_VARIANTS = ["MACD_TV", "ATR_TV", "DMI_TV", "MFI_TV", "OBV_TV", "KC_TV", "BBW", "HIGHEST", "LOWEST"]


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    """A real registry holding the indicator layer only, so these tests do not depend on
    every other subsystem importing cleanly during global plugin discovery."""
    reg = Registry(discovered=True)
    register(reg)
    monkeypatch.setattr("aio.registry.registry", reg)
    return reg


@pytest.fixture(scope="module")
def bars(tv_dir) -> dict[str, np.ndarray]:
    df = pd.read_csv(tv_dir / "ohlcv.csv")
    return {k: df[c].to_numpy(np.float64) for k, c in
            (("open", "open"), ("high", "high"), ("low", "low"), ("close", "close"), ("volume", "Volume"))}


@pytest.fixture(scope="module")
def short(bars) -> dict[str, np.ndarray]:
    return {k: v[:3000].copy() for k, v in bars.items()}


# -- registry ---------------------------------------------------------------------------

def test_every_talib_function_is_registered_with_its_metadata(own_registry):
    names = talib.get_functions()
    assert len(names) > 150
    for name in names:
        idef = get_indicator(name)
        info = abstract.Function(name).info
        flat = []
        for v in info["input_names"].values():
            flat.extend(v if isinstance(v, list) else [v])
        assert idef.inputs == tuple(flat), name
        assert idef.params == dict(info["parameters"]), name
        assert idef.outputs == tuple(info["output_names"]), name
        assert own_registry.get("indicator", name) is idef


def test_every_talib_function_computes_what_talib_computes(short):
    periods = np.full(len(short["close"]), 10.0)
    for name in talib.get_functions():
        idef = get_indicator(name)
        inputs = {**short, "periods": periods}
        ours = compute_indicator(name, inputs)
        direct = getattr(talib, name)(*[inputs[k] for k in idef.inputs], **idef.params)
        direct = direct if isinstance(direct, (list, tuple)) else [direct]
        assert list(ours) == list(idef.outputs), name
        for out, ref in zip(ours.values(), direct):
            np.testing.assert_array_equal(out, ref, err_msg=name)
        lb = idef.lookback(idef.params)
        for oname, out in ours.items():
            if out.dtype.kind == "f":
                assert np.isnan(out[:lb]).all(), f"{name}.{oname} has values inside its lookback {lb}"


def test_lookback_is_the_warmup_of_tv_variants(short):
    for name in TV_VARIANTS:
        idef = get_indicator(name)
        out = compute_indicator(name, short)
        lb = idef.lookback(idef.params)
        first = max(int(np.argmax(~np.isnan(v))) for v in out.values())
        assert first == lb, f"{name}: first full bar {first}, lookback says {lb}"


def test_names_are_case_insensitive_and_unknown_names_list_known_ones():
    assert get_indicator("rsi") is get_indicator("RSI")
    assert get_indicator("macd_tv").name == "MACD_TV"
    with pytest.raises(UnknownPluginError, match="Did you mean 'RSI'"):
        get_indicator("RSII")


def test_register_adds_sets_with_their_configs(own_registry):
    assert set(own_registry.names("indicator_set")) >= {"classic", "tradingview"}
    classic = own_registry.get_plugin("indicator_set", "classic")
    assert isinstance(classic.obj, IndicatorSetConfig)
    # conf/indicators/classic.yaml ships, so Hydra finds the YAML and no ConfigStore twin is stored
    assert (REPO / "conf" / "indicators" / "classic.yaml").is_file() and classic.config is None


# -- parameters and inputs --------------------------------------------------------------

def test_params_are_coerced_and_checked(short):
    a = compute_indicator("RSI", short, {"timeperiod": 14.0})["real"]
    np.testing.assert_array_equal(a, talib.RSI(short["close"], 14))
    with pytest.raises(ConfigError, match="whole number"):
        compute_indicator("RSI", short, {"timeperiod": 14.5})
    with pytest.raises(ConfigError, match="no parameter 'length'.*timeperiod"):
        compute_indicator("RSI", short, {"length": 14})
    with pytest.raises(ConfigError, match="TA-Lib rejected RSI"):
        compute_indicator("RSI", short, {"timeperiod": 1})
    with pytest.raises(ConfigError, match="needs input 'volume'"):
        compute_indicator("OBV", {"close": short["close"]})


def test_inputs_of_other_dtypes_are_accepted(short):
    as_list = list(short["close"][:200])
    out = compute_indicator("SMA", {"close": as_list}, {"timeperiod": 10})["real"]
    np.testing.assert_array_equal(out, talib.SMA(short["close"][:200], 10))
    f32 = short["close"][:200].astype(np.float32)
    assert compute_indicator("SMA", {"close": f32}, {"timeperiod": 10})["real"].dtype == np.float64


@pytest.mark.parametrize("name", ["RSI", "EMA", "BBANDS", "STOCH", "ADX", "MFI", "CCI", "WILLR"] + TV_VARIANTS)
def test_leading_nans_stay_nan_and_shift_the_warmup(short, name):
    """An indicator of an indicator: the input starts with NaNs, the output too."""
    k = 37
    shifted = {key: np.r_[np.full(k, np.nan), v[:1000]] for key, v in short.items()}
    plain = {key: v[:1000] for key, v in short.items()}
    a = compute_indicator(name, shifted)
    b = compute_indicator(name, plain)
    for o in a:
        assert np.isnan(a[o][:k]).all(), (name, o)
        np.testing.assert_allclose(a[o][k:], b[o], rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=f"{name}.{o}")


# -- TradingView variants against Pine's published definitions (plain loops) -------------

def _pine_rma(x, n):
    out = np.full(len(x), np.nan)
    vals = []
    prev = math.nan
    for i, v in enumerate(x):
        if math.isnan(v):
            continue
        if math.isnan(prev):
            vals.append(v)
            if len(vals) == n:
                prev = sum(vals) / n
                out[i] = prev
            continue
        prev = (prev * (n - 1) + v) / n
        out[i] = prev
    return out


def _pine_ema(x, n):
    out = np.full(len(x), np.nan)
    vals, prev, alpha = [], math.nan, 2.0 / (n + 1)
    for i, v in enumerate(x):
        if math.isnan(v):
            continue
        if math.isnan(prev):
            vals.append(v)
            if len(vals) == n:
                prev = sum(vals) / n
                out[i] = prev
            continue
        prev = prev + alpha * (v - prev)
        out[i] = prev
    return out


def _pine_tr(h, l, c, handle_na):
    tr = np.full(len(h), np.nan)
    for i in range(len(h)):
        if i == 0:
            tr[i] = h[i] - l[i] if handle_na else math.nan
        else:
            tr[i] = max(h[i] - l[i], abs(h[i] - c[i - 1]), abs(l[i] - c[i - 1]))
    return tr


def test_rma_is_pines_rma(short):
    x = short["close"]
    np.testing.assert_allclose(compute_indicator("RMA", short, {"timeperiod": 14})["real"], _pine_rma(x, 14), rtol=1e-13)


def test_atr_tv_is_pines_atr(short):
    h, l, c = short["high"], short["low"], short["close"]
    ref = _pine_rma(_pine_tr(h, l, c, True), 14)  # ta.atr(length) = ta.rma(ta.tr(true), length)
    out = compute_indicator("ATR_TV", short, {"timeperiod": 14})["real"]
    assert np.array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_allclose(out, ref, rtol=1e-12)


def test_dmi_tv_is_pines_dmi(short):
    h, l, c = short["high"], short["low"], short["close"]
    n, eps = 14, 1e-10
    plus_dm = np.full(len(h), np.nan)
    minus_dm = np.full(len(h), np.nan)
    for i in range(1, len(h)):
        up, down = h[i] - h[i - 1], l[i - 1] - l[i]
        plus_dm[i] = up if (up - down > eps and up > eps) else 0.0
        minus_dm[i] = down if (down - up > eps and down > eps) else 0.0
    trur = _pine_rma(_pine_tr(h, l, c, False), n)
    plus = 100 * _pine_rma(plus_dm, n) / trur
    minus = 100 * _pine_rma(minus_dm, n) / trur
    s = plus + minus
    adx = 100 * _pine_rma(np.abs(plus - minus) / np.where(s == 0, 1, s), n)
    out = compute_indicator("DMI_TV", short, {"timeperiod": n, "adxperiod": n})
    for ours, ref in ((out["plus_di"], plus), (out["minus_di"], minus), (out["adx"], adx)):
        assert np.array_equal(np.isnan(ours), np.isnan(ref))
        np.testing.assert_allclose(ours, ref, rtol=1e-11)


def test_kc_tv_is_pines_kc(short):
    h, l, c = short["high"], short["low"], short["close"]
    basis = _pine_ema(c, 20)
    rng = _pine_ema(_pine_tr(h, l, c, False), 20)
    out = compute_indicator("KC_TV", short, {"timeperiod": 20, "nbdev": 1.5})
    np.testing.assert_allclose(out["middleband"], basis, rtol=1e-12)
    np.testing.assert_allclose(out["upperband"], basis + 1.5 * rng, rtol=1e-12)
    np.testing.assert_allclose(out["lowerband"], basis - 1.5 * rng, rtol=1e-12)


def test_obv_tv_is_pines_obv(short):
    c, v = short["close"], short["volume"]
    ref = np.full(len(c), np.nan)
    total = 0.0
    for i in range(1, len(c)):  # ta.obv = ta.cum(math.sign(ta.change(close)) * volume)
        total += np.sign(c[i] - c[i - 1]) * v[i]
        ref[i] = total
    np.testing.assert_allclose(compute_indicator("OBV_TV", short)["real"], ref, rtol=1e-12, atol=1e-6)


@pytest.mark.parametrize("talib_name, tv_name, out_talib, out_tv", [
    ("ATR", "ATR_TV", "real", "real"),
    ("ADX", "DMI_TV", "real", "adx"),
    ("PLUS_DI", "DMI_TV", "real", "plus_di"),
])
def test_talib_wilder_indicators_converge_to_their_tv_variant(bars, talib_name, tv_name, out_talib, out_tv):
    """TA-Lib's ATR/ADX/DI export to ta.atr/ta.dmi: they differ in warm-up only."""
    a = compute_indicator(talib_name, bars)[out_talib]
    b = compute_indicator(tv_name, bars)[out_tv]
    ok = ~np.isnan(a) & ~np.isnan(b)
    rel = np.abs(a[ok] - b[ok]) / np.abs(b[ok]).clip(1e-12)
    assert rel[:5].max() > 1e-6  # visibly different early on
    late = rel[1000:]
    if talib_name == "ATR":
        assert late.max() < 1e-6  # the same once warmed up (23k real bars)
    else:
        # mostly the same; bars whose up and down moves tie up to float dust make TA-Lib
        # count a movement Pine's tolerant comparison does not, and the two part for a while
        assert np.median(late) < 1e-12 and (late < 1e-6).mean() > 0.9
    idef = get_indicator(talib_name)
    assert not idef.pine_exact and idef.tv_variant == tv_name and idef.note


# -- Pine mappings ----------------------------------------------------------------------

def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v) if isinstance(v, int) else repr(float(v))


def pine_of(name: str, inputs: dict | None = None, **params) -> PineCall:
    idef = get_indicator(name)
    i = {k: k for k in idef.inputs}
    i.update(inputs or {})
    p = {k: _fmt(v) for k, v in {**idef.params, **params}.items()}
    return idef.pine(i, p)


@pytest.mark.parametrize("name, params, expr, tup", [
    ("RSI", {"timeperiod": 14}, "ta.rsi(close, 14)", None),
    ("EMA", {"timeperiod": 20}, "ta.ema(close, 20)", None),
    ("SMA", {"timeperiod": 20}, "ta.sma(close, 20)", None),
    ("WMA", {"timeperiod": 9}, "ta.wma(close, 9)", None),
    ("HMA", {"timeperiod": 9}, "ta.hma(close, 9)", None),
    ("RMA", {"timeperiod": 9}, "ta.rma(close, 9)", None),
    ("BBANDS", {"timeperiod": 20}, "ta.bb(close, 20, 2.0)", ("middleband", "upperband", "lowerband")),
    ("MACD_TV", {}, "ta.macd(close, 12, 26, 9)", ("macd", "macdsignal", "macdhist")),
    ("ATR", {"timeperiod": 14}, "ta.atr(14)", None),
    ("ATR_TV", {"timeperiod": 14}, "ta.atr(14)", None),
    ("ADX", {"timeperiod": 14}, "ta.dmi(14, 14)", ("plus_di", "minus_di", "real")),
    ("DMI_TV", {"timeperiod": 14, "adxperiod": 10}, "ta.dmi(14, 10)", ("plus_di", "minus_di", "adx")),
    ("MFI", {"timeperiod": 14}, "ta.mfi(hlc3, 14)", None),
    ("MFI_TV", {"timeperiod": 14}, "ta.mfi(close, 14)", None),
    ("CCI", {"timeperiod": 20}, "ta.cci(hlc3, 20)", None),
    ("MOM", {"timeperiod": 10}, "ta.mom(close, 10)", None),
    ("ROC", {"timeperiod": 10}, "ta.roc(close, 10)", None),
    ("STDDEV", {"timeperiod": 20, "nbdev": 1.0}, "ta.stdev(close, 20)", None),
    ("STDDEV", {"timeperiod": 20, "nbdev": 2.0}, "ta.stdev(close, 20) * 2.0", None),
    ("MAX", {"timeperiod": 20}, "ta.highest(close, 20)", None),
    ("HIGHEST", {"timeperiod": 20}, "ta.highest(close, 20)", None),
    ("MIN", {"timeperiod": 20}, "ta.lowest(close, 20)", None),
    ("LOWEST", {"timeperiod": 20}, "ta.lowest(close, 20)", None),
    ("WILLR", {"timeperiod": 14}, "ta.wpr(14)", None),
    ("OBV", {}, "ta.obv", None),
    ("OBV_TV", {}, "ta.obv", None),
    ("TRANGE", {}, "ta.tr", None),
    ("BBW", {"timeperiod": 20, "nbdev": 2.0}, "ta.bbw(close, 20, 2.0)", None),
    ("KC_TV", {"timeperiod": 20}, "ta.kc(close, 20, 2.0, true)", ("middleband", "upperband", "lowerband")),
    ("STOCHF", {"fastk_period": 20}, "ta.stoch(close, high, low, 20)", None),
])
def test_pine_mappings(name, params, expr, tup):
    call = pine_of(name, **params)
    assert call.expr == expr
    assert call.tuple_outputs == tup
    if tup:
        assert set(tup) & set(get_indicator(name).outputs)


def test_stoch_exports_both_lines_with_their_smoothing():
    call = pine_of("STOCH", fastk_period=14, slowk_period=3, slowd_period=3)
    k = "ta.sma(ta.stoch(close, high, low, 14), 3)"
    assert call.expr == k and call.output_exprs == {"slowk": k, "slowd": f"ta.sma({k}, 3)"}
    call = pine_of("STOCH", slowd_matype=1)
    assert call.output_exprs["slowd"].startswith("ta.ema(")


def test_pine_params_may_be_input_identifiers_and_sources_expressions():
    idef = get_indicator("RSI")
    assert idef.pine({"close": "fast_ma - slow_ma"}, {"timeperiod": "rsiLength"}).expr == "ta.rsi(fast_ma - slow_ma, rsiLength)"
    assert pine_of("MFI", {"high": "x", "low": "x", "close": "x"}).expr == "ta.mfi(x, 14)"
    assert pine_of("CCI", {"close": "c2"}).expr == "ta.cci(((high) + (low) + (c2)) / 3, 14)"
    assert pine_of("OBV", {"close": "hl2"}).expr == "ta.cum(math.sign(ta.change(hl2)) * (volume))"


@pytest.mark.parametrize("name, inputs, params, match", [
    ("BBANDS", None, {"nbdevup": 2.0, "nbdevdn": 1.5}, "nbdevup == nbdevdn"),
    ("BBANDS", None, {"matype": 1}, "matype=0"),
    ("ATR", {"close": "hl2"}, {}, "chart's high/low/close"),
    ("ADX", {"high": "h2"}, {}, "ta.dmi"),
    ("MFI", {"volume": "vol2"}, {}, "ta.mfi"),
    ("STOCH", None, {"slowk_matype": 6}, "no Pine ta"),
])
def test_pine_mappings_refuse_what_pine_cannot_express(name, inputs, params, match):
    with pytest.raises(ExportError, match=match):
        pine_of(name, inputs, **params)


def test_matype_must_be_a_literal_to_choose_the_pine_function():
    idef = get_indicator("STOCH")
    p = {k: _fmt(v) for k, v in idef.params.items()}
    p["slowk_matype"] = "maType"
    with pytest.raises(ExportError, match="cannot be an optimised"):
        idef.pine({k: k for k in idef.inputs}, p)


def test_every_pine_mapping_names_real_pine_functions():
    """Each mapping, at its defaults, only calls functions of Pine v6's ta/math namespaces."""
    from aio.pine.check import TA_FUNCTIONS

    count = 0
    for name in talib.get_functions() + TV_VARIANTS:
        idef = get_indicator(name)
        if idef.pine is None:
            continue
        call = pine_of(name)
        exprs = [call.expr, *(call.output_exprs or {}).values()]
        for e in exprs:
            for fn in re.findall(r"\bta\.([a-z_]+)", e):
                assert fn in TA_FUNCTIONS, (name, e)
            assert e.count("(") == e.count(")"), (name, e)
        count += 1
    assert count >= 35


def test_exported_pine_parses(tmp_path):
    """The expressions, written into a v6 script, parse with pynescript (its venv is made on first use)."""
    from aio.pine.check import check_files

    lines = ["//@version=6", 'indicator("aio indicators")']
    k = 0
    for name in talib.get_functions() + TV_VARIANTS:
        idef = get_indicator(name)
        if idef.pine is None:
            continue
        call = pine_of(name)
        k += 1
        if call.tuple_outputs:
            lines.append(f"[{', '.join(f'v{k}_{j}' for j in range(len(call.tuple_outputs)))}] = {call.expr}")
        else:
            lines.append(f"v{k} = {call.expr}")
        for j, e in enumerate((call.output_exprs or {}).values()):
            lines.append(f"w{k}_{j} = {e}")
    lines.append("plot(close)")
    path = tmp_path / "ind.pine"
    path.write_text("\n".join(lines) + "\n")
    (rep,) = check_files([path])
    assert rep.ok, rep.problems


# -- indicator sets ---------------------------------------------------------------------

def test_classic_set_columns_and_values(short):
    out = compute_indicator_set(short, "classic")
    assert list(out) == ["rsi_14", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower",
                         "atr_14", "ema_20", "ema_50", "sma_20", "sma_50", "sma_200", "stoch_k", "stoch_d", "adx_14"]
    c, h, l = short["close"], short["high"], short["low"]
    np.testing.assert_array_equal(out["rsi_14"], talib.RSI(c, 14))
    np.testing.assert_array_equal(out["bb_upper"], talib.BBANDS(c, 20, 2.0, 2.0, 0)[0])
    np.testing.assert_array_equal(out["stoch_d"], talib.STOCH(h, l, c, 14, 3, 0, 3, 0)[1])
    np.testing.assert_array_equal(out["macd"], talib.EMA(c, 12) - talib.EMA(c, 26))
    np.testing.assert_array_equal(out["adx_14"], talib.ADX(h, l, c, 14))


def test_sets_read_polars_pandas_and_arrays_alike(short):
    ref = compute_indicator_set(short, "tradingview")
    for frame in (pl.DataFrame(short), pd.DataFrame(short)):
        got = compute_indicator_set(frame, "tradingview")
        assert list(got) == list(ref)
        for k in ref:
            np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


def test_set_entries_can_read_earlier_columns_and_default_names(short):
    cfg = {"name": "mine", "entries": [
        {"alias": "ema_10", "fn": "EMA", "params": {"timeperiod": 10}},
        {"alias": "rsi_of_ema", "fn": "RSI", "inputs": {"close": "ema_10"}, "params": {"timeperiod": 5}},
        {"alias": "bb", "fn": "BBANDS"},
    ]}
    out = compute_indicator_set(short, cfg)
    assert list(out) == ["ema_10", "rsi_of_ema", "bb_upperband", "bb_middleband", "bb_lowerband"]
    np.testing.assert_array_equal(out["rsi_of_ema"], talib.RSI(talib.EMA(short["close"], 10), 5))


@pytest.mark.parametrize("entry, match", [
    ({"alias": "x", "fn": "NOPE"}, r"entries\[0\] \(x\)\.fn"),
    ({"alias": "x", "fn": "RSI", "inputs": {"close": "missing_col"}}, "no column 'missing_col'"),
    ({"alias": "x", "fn": "RSI", "inputs": {"price": "close"}}, "takes inputs"),
    ({"alias": "x", "fn": "RSI", "params": {"period": 3}}, "no parameter 'period'"),
    ({"alias": "x", "fn": "BBANDS", "columns": {"upper": "u"}}, "outputs"),
    ({"alias": "x", "fn": "RSI", "colums": {}}, "unknown config key"),
])
def test_set_errors_name_the_entry(short, entry, match):
    with pytest.raises(ConfigError, match=match):
        compute_indicator_set(short, {"name": "bad", "entries": [entry]})


def test_shipped_yaml_equals_the_builtin_sets():
    from omegaconf import OmegaConf

    for name, cfg in BUILTIN_SETS.items():
        assert as_set_config(OmegaConf.load(REPO / "conf" / "indicators" / f"{name}.yaml")) == cfg, name


def test_indicators_choice_composes_with_hydra(tmp_path, short):
    """`indicators=classic` from conf/indicators, and a set registered with only a typed node."""
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore

    typed = set_config_type(IndicatorSetConfig(name="typed_only_test", entries=BUILTIN_SETS["classic"].entries[:2]))
    ConfigStore.instance().store(group="indicators", name="typed_only_test", node=typed)
    (tmp_path / "config.yaml").write_text(
        f"defaults:\n  - indicators: classic\n  - _self_\nhydra:\n  searchpath:\n    - file://{REPO / 'conf'}\n"
    )
    with initialize_config_dir(config_dir=str(tmp_path), version_base=None):
        cfg = compose(config_name="config", overrides=["indicators.entries.0.params.timeperiod=21"])
        out = compute_indicator_set(short, cfg.indicators)
        np.testing.assert_array_equal(out["rsi_14"], talib.RSI(short["close"], 21))
        cfg2 = compose(config_name="config", overrides=["indicators=typed_only_test"])
        assert list(compute_indicator_set(short, cfg2.indicators)) == ["rsi_14", "macd", "macd_signal", "macd_hist"]
