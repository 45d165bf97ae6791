"""What every renderer shares: the window batch, indicator specs, the plugin base class.

A chart for decision bar ``t`` shows the last ``N`` bars ending at ``t`` (inclusive),
so it uses only bars with ``ts_init <= t.ts_init``. Overlay and oscillator series are
computed once over the whole bar series with causal (TA-Lib style) indicators and
then sliced per window, so a window's overlay values also depend only on the past.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from aio.config import param
from aio.errors import ConfigError

OHLCV = ("open", "high", "low", "close", "volume")


@dataclass
class IndicatorSpec:
    """One indicator drawn on a chart, by its TA-Lib name (``EMA``, ``BBANDS``, ``RSI``...)."""

    fn: str = param("EMA", help="TA-Lib function name")
    params: dict[str, float] = param(default_factory=dict, help="TA-Lib keyword parameters")
    outputs: list[str] | None = param(None, help="which outputs to draw (default: all)")

    def label(self) -> str:
        args = "_".join(_fmt(v) for _, v in sorted(self.params.items()))
        return f"{self.fn.lower()}{'_' + args if args else ''}"


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _talib_params(params: dict[str, float]) -> dict[str, Any]:
    # YAML/CLI numbers arrive as floats; TA-Lib wants ints for periods.
    return {k: int(v) if float(v).is_integer() else float(v) for k, v in params.items()}


def compute_indicator_outputs(spec: IndicatorSpec, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All outputs of ``spec`` over whole series, keyed ``<label>.<output>``.

    Uses :func:`aio.indicators.compute_indicator` when that module is present, TA-Lib's
    abstract API otherwise (same names, same numbers).
    """
    inputs = {k: np.ascontiguousarray(arrays[k], dtype=np.float64) for k in OHLCV if k in arrays}
    params = _talib_params(spec.params)
    out: dict[str, np.ndarray]
    try:
        from aio.indicators import compute_indicator  # type: ignore[attr-defined]
    except ImportError:
        compute_indicator = None
    if compute_indicator is not None:
        out = dict(compute_indicator(spec.fn, inputs, params))
    else:
        from talib import abstract

        try:
            fn = abstract.Function(spec.fn.upper())
        except Exception as exc:
            raise ConfigError(f"unknown indicator fn={spec.fn!r} in a renderer overlay; use a TA-Lib name such as EMA, SMA, BBANDS, RSI") from exc
        defaults = dict(fn.parameters)
        params = {k: type(defaults[k])(v) if k in defaults and isinstance(defaults[k], (int, float)) else v
                  for k, v in params.items()}
        try:
            res = fn(inputs, **params)
        except Exception as exc:
            raise ConfigError(f"indicator {spec.fn} with params {spec.params} failed: {exc}") from exc
        names = list(fn.output_names)
        res = [res] if isinstance(res, np.ndarray) else list(res)
        out = dict(zip(names, res))
    if spec.outputs:
        missing = [o for o in spec.outputs if o not in out]
        if missing:
            raise ConfigError(f"indicator {spec.fn} has no output(s) {missing}; its outputs are {sorted(out)}")
        out = {k: out[k] for k in spec.outputs}
    return {f"{spec.label()}.{k}": np.asarray(v, dtype=np.float64) for k, v in out.items()}


@dataclass
class ChartBatch:
    """``B`` chart windows of ``N`` bars each; every array is ``(B, N)`` float64.

    ``overlays`` are drawn on the price scale, ``oscillators`` in their own pane.
    """

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    overlays: dict[str, np.ndarray] = field(default_factory=dict)
    oscillators: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.close.shape[0]

    @property
    def bars(self) -> int:
        return self.close.shape[1]

    def slice(self, start: int, stop: int) -> "ChartBatch":
        return ChartBatch(
            *(getattr(self, k)[start:stop] for k in OHLCV),
            overlays={k: v[start:stop] for k, v in self.overlays.items()},
            oscillators={k: v[start:stop] for k, v in self.oscillators.items()},
        )


@dataclass
class SeriesSet:
    """Whole-series arrays a renderer draws from: OHLCV plus the overlay/oscillator series."""

    arrays: dict[str, np.ndarray]
    overlays: dict[str, np.ndarray] = field(default_factory=dict)
    oscillators: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.arrays["close"])

    def windows(self, ends: np.ndarray, n: int) -> ChartBatch:
        """The windows of ``n`` bars ending at (and including) each index in ``ends``."""
        ends = np.asarray(ends, dtype=np.int64)
        if ends.size and (ends.min() < n - 1 or ends.max() >= len(self)):
            raise ValueError(f"window ends must lie in [{n - 1}, {len(self) - 1}] for {n}-bar windows")
        idx = ends[:, None] + np.arange(1 - n, 1, dtype=np.int64)[None, :]
        take = lambda a: np.asarray(a, dtype=np.float64)[idx]  # noqa: E731
        return ChartBatch(
            *(take(self.arrays[k]) for k in OHLCV),
            overlays={k: take(v) for k, v in self.overlays.items()},
            oscillators={k: take(v) for k, v in self.oscillators.items()},
        )


class Renderer:
    """Base class of renderer plugins: ``Renderer(config)``; a new renderer is a subclass.

    Image renderers set ``produces_arrays = True`` and implement :meth:`render`
    (``(B, H, W, 3)`` uint8) and :meth:`render_png` (one PNG per chart, deterministic).
    """

    name: ClassVar[str] = "base"
    produces_arrays: ClassVar[bool] = False

    def __init__(self, config: Any) -> None:
        self.config = config

    @property
    def bars(self) -> int:
        return int(self.config.bars)

    def overlay_specs(self) -> list[IndicatorSpec]:
        return list(getattr(self.config, "overlays", None) or [])

    def oscillator_specs(self) -> list[IndicatorSpec]:
        return list(getattr(self.config, "oscillators", None) or [])

    def series(self, arrays: dict[str, np.ndarray]) -> SeriesSet:
        """OHLCV plus every overlay/oscillator series this renderer draws, whole-series."""
        overlays: dict[str, np.ndarray] = {}
        for spec in self.overlay_specs():
            overlays.update(compute_indicator_outputs(spec, arrays))
        oscillators: dict[str, np.ndarray] = {}
        for spec in self.oscillator_specs():
            oscillators.update(compute_indicator_outputs(spec, arrays))
        base = {k: np.asarray(arrays[k], dtype=np.float64) for k in OHLCV}
        return SeriesSet(base, overlays, oscillators)

    def warmup(self) -> int:
        """Bars before the first index whose window is complete."""
        return self.bars - 1

    def render(self, batch: ChartBatch) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError(f"renderer {self.name!r} does not draw image arrays")

    def render_png(self, batch: ChartBatch) -> list[bytes]:  # pragma: no cover - interface
        raise NotImplementedError(f"renderer {self.name!r} does not draw PNG images")
