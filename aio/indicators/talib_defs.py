"""Every TA-Lib function as an :class:`IndicatorDef`, built from TA-Lib's own metadata.

``talib.abstract`` describes each function (input names, parameter defaults, output
names, group); computation goes straight to the compiled function (``talib.RSI`` ...),
not through the abstract wrapper, so a call costs what calling TA-Lib costs.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Mapping

import numpy as np
import talib
from talib import abstract

from aio.errors import ConfigError
from aio.indicators.base import IndicatorDef
from aio.indicators.pine_map import PINE


def _flat_inputs(input_names: Mapping[str, Any]) -> tuple[str, ...]:
    out: list[str] = []
    for v in input_names.values():
        out.extend(v if isinstance(v, (list, tuple)) else [v])
    if len(set(out)) != len(out):  # pragma: no cover - TA-Lib metadata never does this today
        raise RuntimeError(f"TA-Lib inputs {input_names} repeat a name")
    return tuple(out)


def _compute(name: str, fn: Any, inputs: tuple[str, ...], outputs: tuple[str, ...]):
    single = len(outputs) == 1
    out0 = outputs[0]

    def compute(arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        try:
            res = fn(*[arrays[k] for k in inputs], **params)
        except Exception as exc:  # TA-Lib reports bad parameters as plain Exceptions
            if isinstance(exc, KeyError):
                raise
            raise ConfigError(f"TA-Lib rejected {name}({dict(params)}): {exc}. Check the parameter ranges") from exc
        if single:
            return {out0: res}
        return dict(zip(outputs, res))

    compute.__name__ = f"talib_{name}"
    return compute


def _lookback(name: str, defaults: Mapping[str, Any]):
    def lookback(params: Mapping[str, Any]) -> int:
        f = abstract.Function(name)
        f.set_parameters(**{**defaults, **dict(params)})
        return int(f.lookback)

    return lookback


@cache
def talib_defs() -> dict[str, IndicatorDef]:
    defs: dict[str, IndicatorDef] = {}
    for group, names in talib.get_function_groups().items():
        for name in names:
            info = abstract.Function(name).info
            inputs = _flat_inputs(info["input_names"])
            params = dict(info["parameters"])
            outputs = tuple(info["output_names"])
            spec = PINE.get(name)
            defs[name] = IndicatorDef(
                name=name,
                inputs=inputs,
                params=params,
                outputs=outputs,
                compute=_compute(name, getattr(talib, name), inputs, outputs),
                pine=spec.fn if spec else None,
                lookback=_lookback(name, params),
                description=f"{info['display_name']} (TA-Lib)",
                group=group,
                pine_exact=spec.exact if spec else True,
                tv_variant=spec.tv_variant if spec else None,
                note=spec.note if spec else "",
            )
    return defs
