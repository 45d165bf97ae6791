"""Training targets: the dataset's labels rendered as the JSON answer the model should give.

Everything but ``direction`` and ``confidence`` is known at the decision bar (pattern
and reason come from the chart's own past), so the model is taught to describe what
it sees and to forecast only the direction:

- ``direction``: the direction class of the label column (0 down, 1 flat, 2 up);
- ``confidence``: 0.5 + 0.5 * min(1, |forward return in ATR| / scale) for up/down, 0.5 flat;
- ``pattern``: the dataset's ``pattern_label`` column when configured, else the regime
  with the sign of the longest past-return feature (uptrend/downtrend/range/none);
- ``horizon``: the label's horizon; ``reason``: regime and past momentum in words.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from aio.vlm.config import DIRECTIONS
from aio.vlm.schema import Answer, AnswerSpec, render_answer


def _momentum_column(names: list[str]) -> str | None:
    lags = [(int(m.group(1)), n) for n in names if (m := re.fullmatch(r"(?:log_)?ret_(\d+)", n))]
    return max(lags)[1] if lags else None


def past_pattern(regime: str | None, momentum: float, vocab: tuple[str, ...]) -> str:
    want = "none"
    if regime == "trending" and math.isfinite(momentum) and momentum != 0:
        want = "uptrend" if momentum > 0 else "downtrend"
    elif regime in ("ranging", "quiet"):
        want = "range"
    return want if want in vocab else ("none" if "none" in vocab else vocab[0])


def target_answers(table: Any, rows: np.ndarray, spec: AnswerSpec, confidence_scale_atr: float = 1.0,
                   pattern_values: np.ndarray | None = None, atr_returns: np.ndarray | None = None) -> list[str]:
    """Rendered answers for ``rows`` of a :class:`aio.models.data.Table`."""
    mcol = _momentum_column(table.feature_names)
    mom = table.features[:, table.feature_names.index(mcol)] if mcol else np.zeros(len(table))
    horizon = table.horizon if table.horizon in spec.horizons else spec.horizons[0]
    out = []
    for r in np.asarray(rows, dtype=np.int64):
        y = int(table.y[r])
        move = float(atr_returns[r]) if atr_returns is not None else float("nan")
        conf = 0.5 if y == 1 or not math.isfinite(move) else 0.5 + 0.5 * min(1.0, abs(move) / confidence_scale_atr)
        regime = str(table.regime[r]) if table.regime[r] is not None else "unknown"
        m = float(mom[r])
        if pattern_values is not None and str(pattern_values[r]) in spec.patterns:
            pattern = str(pattern_values[r])
        else:
            pattern = past_pattern(regime, m, spec.patterns)
        word = "rising" if m > 0 else "falling" if m < 0 else "flat"
        reason = f"{regime} regime, {word} closes" if math.isfinite(m) else f"{regime} regime"
        out.append(render_answer(Answer(DIRECTIONS[y], conf, pattern, horizon, reason), spec))
    return out
