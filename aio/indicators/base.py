"""What an indicator is: inputs, parameters, outputs, a compute function and its Pine twin.

The strategy language evaluates ``compute`` on numpy arrays; the Pine exporter calls
``pine`` with Pine source expressions to write the same series into a strategy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from aio.errors import ConfigError, ExportError

Arrays = dict[str, np.ndarray]
ComputeFn = Callable[[Mapping[str, np.ndarray], Mapping[str, Any]], Arrays]


@dataclass(frozen=True)
class PineCall:
    """A Pine expression computing an indicator.

    ``expr`` yields the first output (or, with ``tuple_outputs``, a tuple). ``tuple_outputs``
    are our output names in Pine's tuple order; a slot whose name is not one of our
    outputs is a value Pine returns that we do not (e.g. ``ta.dmi``'s +DI for ``ADX``).
    ``output_exprs`` gives one self-contained expression per output where no single Pine
    call returns them all (e.g. ``STOCH``'s slowk/slowd).
    """

    expr: str
    tuple_outputs: tuple[str, ...] | None = None
    output_exprs: dict[str, str] | None = None


PineFn = Callable[[Mapping[str, str], Mapping[str, str]], PineCall]


@dataclass(frozen=True)
class IndicatorDef:
    """One registered indicator.

    ``pine_exact`` says whether Pine's ``ta.*`` counterpart gives the same values bar for
    bar (up to float rounding) from the first non-NaN bar on. When it is False the two
    differ only in how the warm-up is seeded and converge later; ``note`` says how, and
    ``tv_variant`` names the indicator that matches TradingView exactly.
    """

    name: str
    inputs: tuple[str, ...]
    params: dict[str, Any]
    outputs: tuple[str, ...]
    compute: ComputeFn
    pine: PineFn | None = None
    lookback: Callable[[Mapping[str, Any]], int] | None = None
    description: str = ""
    group: str = ""
    pine_exact: bool = True
    tv_variant: str | None = None
    note: str = ""

    def resolve_params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults overlaid with ``params``, each coerced to its default's type."""
        out = dict(self.params)
        if not params:
            return out
        for key, value in params.items():
            if key not in self.params:
                allowed = ", ".join(self.params) or "(none)"
                raise ConfigError(f"indicator {self.name} has no parameter {key!r}; its parameters are: {allowed}")
            out[key] = _coerce(self.name, key, value, self.params[key])
        return out


def _coerce(fn: str, key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise ConfigError(f"indicator {fn} parameter {key}={value!r} must be true or false")
    if isinstance(default, int):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ConfigError(f"indicator {fn} parameter {key}={value!r} must be an integer")
        if float(value) != int(value):
            raise ConfigError(f"indicator {fn} parameter {key}={value!r} must be a whole number")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ConfigError(f"indicator {fn} parameter {key}={value!r} must be a number")
        return float(value)
    return value


# -- helpers for Pine mappings -------------------------------------------------------

def on_chart(inputs: Mapping[str, str], *names: str) -> bool:
    """True when each named input is the chart's own series (Pine builtins like ta.atr use those)."""
    return all(str(inputs.get(n, n)).strip() == n for n in names)


def require_chart(fn: str, pine_name: str, inputs: Mapping[str, str], *names: str) -> None:
    if not on_chart(inputs, *names):
        got = {n: inputs.get(n) for n in names}
        raise ExportError(
            f"{fn} maps to Pine's {pine_name}, which always reads the chart's {'/'.join(names)}; "
            f"this binding feeds it {got}. Bind those inputs to the plain price series or use an "
            f"indicator that takes a source"
        )


def literal(fn: str, key: str, expr: str) -> float:
    """A parameter that decides *which* Pine call to write must be a number, not an input."""
    try:
        return float(expr)
    except (TypeError, ValueError):
        raise ExportError(
            f"{fn} parameter {key}={expr!r} chooses the Pine function and so cannot be an optimised "
            f"input; fix it to a number in the strategy"
        ) from None


_MA_PINE = {0: "ta.sma", 1: "ta.ema", 2: "ta.wma", 9: "ta.hma", 13: "ta.rma"}


def pine_ma(fn: str, key: str, matype_expr: str) -> str:
    """Pine function for a TA-Lib MA type (0 SMA, 1 EMA, 2 WMA, 9 HMA, 13 RMA; others have no ta.* twin)."""
    mt = int(literal(fn, key, matype_expr))
    if mt not in _MA_PINE:
        raise ExportError(
            f"{fn} parameter {key}={mt} (TA-Lib MA type) has no Pine ta.* counterpart; use 0 (SMA), "
            f"1 (EMA), 2 (WMA), 9 (HMA) or 13 (RMA) to export"
        )
    return _MA_PINE[mt]
