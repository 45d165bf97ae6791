"""Small PNG thumbnails stored next to each pattern (for browsing neighbours)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def png_thumbnail(image: Any, max_side: int = 64) -> bytes:
    """PNG bytes of ``image`` (PIL image or HxW[xC] uint8/float array) shrunk to ``max_side``."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            arr = ((arr - lo) / (hi - lo or 1.0) * 255).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(arr)
    image = image.copy()
    image.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))
