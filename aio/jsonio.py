"""The one numpy-to-JSON cleaner: run files (metrics, manifests, model and search reports).

JSON has no NaN or infinity and no numpy types: :func:`plain` turns numpy scalars
and arrays into Python numbers and lists, NaN/inf (e.g. a Sharpe ratio with no
trades) into ``null``, paths and other objects into strings, recursively.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def plain(o: Any) -> Any:
    """``o`` as plain JSON values (dict/list/str/int/float/bool/None), non-finite floats as None."""
    if o is None or isinstance(o, (bool, str)):
        return o
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, (int, np.integer)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, dict):
        return {str(k) if not isinstance(k, (str, int, float, bool)) or k is None else k: plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple, set, frozenset)):
        return [plain(v) for v in o]
    if isinstance(o, np.ndarray):
        return plain(o.tolist())
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return plain(dataclasses.asdict(o))
    if isinstance(o, Path):
        return str(o)
    return str(o)


def dumps(obj: Any, indent: int | None = 2, **kwargs: Any) -> str:
    """JSON text of ``obj`` after :func:`plain` (never NaN: ``allow_nan=False``)."""
    return json.dumps(plain(obj), indent=indent, allow_nan=False, **kwargs)
