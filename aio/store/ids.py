"""Deterministic keys: the same inputs always give the same id, so re-runs upsert."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

import numpy as np


def short_hash(*parts: Any, n: int = 16) -> str:
    """Hex prefix of sha256 over the parts' canonical JSON (sorted keys)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def model_id_from_weights(state: Mapping[str, Any], n: int = 16) -> str:
    """Hash of a model's weights (torch ``state_dict`` or name -> array mapping).

    Names, dtypes, shapes and bytes all count, in sorted name order, so two models
    share an id exactly when their weights are identical.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        if hasattr(value, "detach"):  # torch tensor, without importing torch here
            value = value.detach().cpu().numpy()
        arr = np.ascontiguousarray(np.asarray(value))
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(repr(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:n]


def pattern_key(model_id: str, symbol: str, timeframe: str, ts_init: int) -> str:
    """Readable unique key of a pattern row: one embedding per model, instrument and bar."""
    return f"{model_id}|{symbol}|{timeframe}|{int(ts_init)}"


def strategy_key(name: str, definition: Any, params: Mapping[str, Any]) -> str:
    return short_hash("strategy", name, definition, dict(params))


def performance_key(run_id: str, strategy_id: str, fold: int, segment: str) -> str:
    return short_hash("perf", run_id, strategy_id, int(fold), segment)
