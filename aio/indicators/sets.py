"""Indicator sets: a named list of indicator calls, chosen in config (``indicators=classic``).

A set turns bars into feature columns::

    name: classic
    entries:
      - {alias: rsi_14, fn: RSI, params: {timeperiod: 14}}
      - {alias: bb, fn: BBANDS, params: {timeperiod: 20}, columns: {upperband: bb_upper}}

Column names: ``alias`` for a one-output indicator, ``alias_<output>`` otherwise, or
exactly what ``columns`` maps each output to (then only those outputs are kept).
``inputs`` maps an indicator input to a column of the bars or to a column computed by
an earlier entry (an indicator of an indicator).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, make_dataclass
from typing import Any

import numpy as np

from aio.config import build
from aio.errors import ConfigError


@dataclass
class IndicatorEntry:
    alias: str
    fn: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] | None = None  # indicator input -> column; default: the column of that name
    columns: dict[str, str] | None = None  # output -> column name; default alias / alias_<output>


@dataclass
class IndicatorSetConfig:
    name: str = "custom"
    entries: list[IndicatorEntry] = field(default_factory=list)


def _e(alias: str, fn: str, columns: dict[str, str] | None = None, **params: Any) -> IndicatorEntry:
    return IndicatorEntry(alias=alias, fn=fn, params=params, columns=columns)


# Built-in sets. conf/indicators/<name>.yaml carries the same entries for Hydra's
# config search path (a test keeps the two identical).
BUILTIN_SETS: dict[str, IndicatorSetConfig] = {
    "classic": IndicatorSetConfig(
        name="classic",
        entries=[
            _e("rsi_14", "RSI", timeperiod=14),
            _e("macd", "MACD_TV", {"macd": "macd", "macdsignal": "macd_signal", "macdhist": "macd_hist"},
               fastperiod=12, slowperiod=26, signalperiod=9),
            _e("bb", "BBANDS", {"upperband": "bb_upper", "middleband": "bb_middle", "lowerband": "bb_lower"},
               timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0),
            _e("atr_14", "ATR", timeperiod=14),
            _e("ema_20", "EMA", timeperiod=20),
            _e("ema_50", "EMA", timeperiod=50),
            _e("sma_20", "SMA", timeperiod=20),
            _e("sma_50", "SMA", timeperiod=50),
            _e("sma_200", "SMA", timeperiod=200),
            _e("stoch", "STOCH", {"slowk": "stoch_k", "slowd": "stoch_d"},
               fastk_period=14, slowk_period=3, slowk_matype=0, slowd_period=3, slowd_matype=0),
            _e("adx_14", "ADX", timeperiod=14),
        ],
    ),
    "tradingview": IndicatorSetConfig(
        name="tradingview",
        entries=[
            _e("rsi_14", "RSI", timeperiod=14),
            _e("macd", "MACD_TV", {"macd": "macd", "macdsignal": "macd_signal", "macdhist": "macd_hist"},
               fastperiod=12, slowperiod=26, signalperiod=9),
            _e("bb", "BBANDS", {"upperband": "bb_upper", "middleband": "bb_middle", "lowerband": "bb_lower"},
               timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=0),
            _e("bbw_20", "BBW", timeperiod=20, nbdev=2.0),
            _e("atr_14", "ATR_TV", timeperiod=14),
            _e("ema_20", "EMA", timeperiod=20),
            _e("sma_50", "SMA", timeperiod=50),
            _e("stoch_k_14", "STOCHF", {"fastk": "stoch_k_14"}, fastk_period=14, fastd_period=1, fastd_matype=0),
            _e("dmi", "DMI_TV", {"plus_di": "di_plus", "minus_di": "di_minus", "adx": "adx_14"},
               timeperiod=14, adxperiod=14),
            _e("mfi_14", "MFI_TV", timeperiod=14),
        ],
    ),
}


def set_config_type(cfg: IndicatorSetConfig) -> type:
    """A typed config whose defaults are this set, for the registry and Hydra's ConfigStore.

    ``indicators=<name>`` then works without a YAML file, and the pipeline's
    ``plugin_config`` validates the composed section against it.
    """
    entries = cfg.entries
    return make_dataclass(
        f"IndicatorSet_{cfg.name}",
        [
            ("name", str, field(default=cfg.name)),
            ("entries", list[IndicatorEntry], field(default_factory=lambda: copy.deepcopy(entries))),
        ],
        bases=(IndicatorSetConfig,),
        namespace={"__module__": __name__},
    )


def as_set_config(cfg: Any) -> IndicatorSetConfig:
    if isinstance(cfg, IndicatorSetConfig):
        return cfg
    if isinstance(cfg, str):
        from aio.registry import registry

        return copy.deepcopy(registry.get("indicator_set", cfg))
    return build(IndicatorSetConfig, cfg, "indicators")


class _Columns:
    """Columns of a polars/pandas frame or a mapping, fetched once as float64 arrays."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.cache: dict[str, np.ndarray] = {}

    def names(self) -> list[str]:
        s = self.source
        return list(s.columns) if hasattr(s, "columns") else list(s)

    def get(self, name: str) -> np.ndarray | None:
        hit = self.cache.get(name)
        if hit is not None:
            return hit
        s = self.source
        if hasattr(s, "get_column"):  # polars: zero-copy for a float64 column without nulls
            if name not in s.columns:
                return None
            arr = s.get_column(name).to_numpy()
        elif hasattr(s, "columns") and hasattr(s, "iloc"):  # pandas
            if name not in s.columns:
                return None
            arr = s[name].to_numpy()
        else:
            if name not in s:
                return None
            arr = s[name]
        arr = np.ascontiguousarray(arr, dtype=np.float64)
        self.cache[name] = arr
        return arr


def compute_indicator_set(frame_or_arrays: Any, cfg: Any) -> dict[str, np.ndarray]:
    """Column name -> array for every entry of the set ``cfg`` (config, mapping or set name)."""
    from aio.indicators import get_indicator

    cfg = as_set_config(cfg)
    cols = _Columns(frame_or_arrays)
    out: dict[str, np.ndarray] = {}
    for i, entry in enumerate(cfg.entries):
        where = f"indicators.entries[{i}] ({entry.alias})"
        try:
            idef = get_indicator(entry.fn)
        except KeyError as exc:
            raise ConfigError(f"config key {where}.fn: {exc}") from None
        mapping = entry.inputs or {}
        for k in mapping:
            if k not in idef.inputs:
                raise ConfigError(f"config key {where}.inputs.{k}: {idef.name} takes inputs {list(idef.inputs)}")
        arrays: dict[str, np.ndarray] = {}
        for inp in idef.inputs:
            col = mapping.get(inp, inp)
            arr = out.get(col)
            if arr is None:
                arr = cols.get(col)
            if arr is None:
                raise ConfigError(
                    f"config key {where}: {idef.name} needs input {inp!r} but there is no column {col!r}; "
                    f"columns: {', '.join(cols.names())}; earlier entries: {', '.join(out) or '(none)'}. "
                    f"Map it with inputs: {{{inp}: <column>}}"
                )
            arrays[inp] = arr
        try:
            params = idef.resolve_params(entry.params)
        except ConfigError as exc:
            raise ConfigError(f"config key {where}.params: {exc}") from None
        res = idef.compute(arrays, params)
        if entry.columns:
            for oname, col in entry.columns.items():
                if oname not in res:
                    raise ConfigError(f"config key {where}.columns.{oname}: {idef.name} outputs {list(idef.outputs)}")
                out[col] = res[oname]
        elif len(idef.outputs) == 1:
            out[entry.alias] = res[idef.outputs[0]]
        else:
            for oname in idef.outputs:
                out[f"{entry.alias}_{oname}"] = res[oname]
    return out
