"""The indicator layer: TA-Lib as the engine, every function reachable by name.

- every TA-Lib function (``talib.get_functions()``) under its TA-Lib name, with TA-Lib's
  input names, parameter defaults and output names;
- TradingView-exact variants where TA-Lib's definition or seeding differs from Pine's
  (``MACD_TV``, ``ATR_TV``, ``DMI_TV``, ``MFI_TV``, ``OBV_TV``, ``KC_TV``) and Pine-only
  ones (``BBW``, ``HIGHEST``, ``LOWEST``);
- plugins: any ``IndicatorDef`` registered under kind ``indicator``;
- indicator sets (kind ``indicator_set``, config group ``indicators``).

Each indicator with a Pine ``ta.*`` counterpart carries a ``pine`` function so strategies
using it export to Pine. See docs/indicators.md.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from aio.errors import ConfigError, UnknownPluginError
from aio.indicators.base import IndicatorDef, PineCall
from aio.indicators.sets import (
    BUILTIN_SETS,
    IndicatorEntry,
    IndicatorSetConfig,
    compute_indicator_set,
    set_config_type,
)

__all__ = [
    "IndicatorDef",
    "IndicatorEntry",
    "IndicatorSetConfig",
    "PineCall",
    "builtin_indicators",
    "compute_indicator",
    "compute_indicator_set",
    "get_indicator",
    "register",
]


@cache
def builtin_indicators() -> dict[str, IndicatorDef]:
    """TA-Lib's functions plus the TradingView variants, by name."""
    from aio.indicators.talib_defs import talib_defs
    from aio.indicators.tv import tv_defs

    base = talib_defs()
    return {**base, **tv_defs(base)}


def get_indicator(name: str) -> IndicatorDef:
    """The indicator registered as ``name`` (case-insensitive fallback)."""
    from aio.registry import registry

    table = registry.plugins["indicator"]
    hit = table.get(name)
    if hit is None:
        # Built-ins need no plugin discovery (which imports every subsystem).
        builtin = builtin_indicators()
        found = builtin.get(name) or builtin.get(str(name).upper())
        if found is not None:
            return found
        registry.ensure_discovered()
        hit = table.get(name) or table.get(str(name).upper())
        if hit is None:
            low = str(name).lower()
            hit = next((p for k, p in table.items() if k.lower() == low), None)
        if hit is None:
            registry.get_plugin("indicator", name)  # raises UnknownPluginError listing names
            raise UnknownPluginError(f"unknown indicator {name!r}")  # pragma: no cover
    return hit.obj


def compute_indicator(name: str, inputs: Mapping[str, np.ndarray], params: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Outputs (by TA-Lib output name) of indicator ``name`` on ``inputs`` with ``params``.

    Inputs are used as float64 contiguous arrays (no copy when they already are);
    leading NaNs stay NaN in the outputs.
    """
    idef = get_indicator(name)
    arrays: dict[str, np.ndarray] = {}
    for k in idef.inputs:
        a = inputs.get(k)
        if a is None:
            raise ConfigError(
                f"indicator {idef.name} needs input {k!r} (inputs: {', '.join(idef.inputs)}); "
                f"given: {', '.join(inputs) or '(none)'}"
            )
        arrays[k] = a if (type(a) is np.ndarray and a.dtype == np.float64 and a.flags.c_contiguous) else np.ascontiguousarray(a, dtype=np.float64)
    if len({len(a) for a in arrays.values()}) > 1:
        raise ConfigError(f"indicator {idef.name}: inputs have different lengths {[len(a) for a in arrays.values()]}")
    return idef.compute(arrays, idef.resolve_params(params))


def register(registry) -> None:
    """Register every indicator (kind ``indicator``) and built-in set (kind ``indicator_set``)."""
    for name, idef in builtin_indicators().items():
        registry.add("indicator", name, idef, description=idef.description)
    for name, cfg in BUILTIN_SETS.items():
        # A set whose YAML ships in conf/indicators is found there by Hydra; a ConfigStore
        # node of the same name would make Hydra merge the two with a deprecation warning.
        # Without the YAML (an installed package), the typed node makes `indicators=<name>` work.
        shipped = (_CONF_DIR / f"{name}.yaml").is_file()
        registry.add(
            "indicator_set",
            name,
            cfg,
            config=None if shipped else set_config_type(cfg),
            description=f"indicator set {name}: {', '.join(e.alias for e in cfg.entries)}",
        )


_CONF_DIR = Path(__file__).resolve().parent.parent.parent / "conf" / "indicators"
