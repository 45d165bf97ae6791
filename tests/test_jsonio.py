"""The one numpy-to-JSON cleaner (aio.jsonio): what run files, model and search reports write."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aio.jsonio import dumps, plain


@dataclass
class Row:
    n: int
    x: float


def test_numpy_values_become_plain_and_non_finite_become_null():
    obj = {"i": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True), "nan": float("nan"), "inf": np.inf,
           "arr": np.array([1.0, np.nan, 2.0]), "nested": [(np.int32(1), -math.inf)], "path": Path("/a/b"),
           "row": Row(1, float("nan")), np.int64(7): "numpy key"}
    out = plain(obj)
    assert out == {"i": 3, "f": 0.5, "b": True, "nan": None, "inf": None, "arr": [1.0, None, 2.0],
                   "nested": [[1, None]], "path": "/a/b", "row": {"n": 1, "x": None}, "7": "numpy key"}
    assert type(out["i"]) is int and type(out["b"]) is bool
    text = dumps(obj)  # allow_nan=False: would raise on any NaN left
    assert json.loads(text)["arr"] == [1.0, None, 2.0]


def test_the_copies_are_gone():
    """pipeline, model tables and search reports all write through aio.jsonio."""
    root = Path(__file__).resolve().parent.parent / "aio"
    for rel in ("pipeline.py", "models/base.py", "optimize/report.py"):
        src = (root / rel).read_text()
        assert "aio.jsonio" in src and "def _finite" not in src and "def _json" not in src and "def _plain" not in src
