"""Small real datasets for the model tests: synthetic ticks -> M1 bars -> chart dataset.

Not collected by pytest (leading underscore); imported by tests/test_models*.py,
test_chartnet*.py and test_knn*.py.
"""

from __future__ import annotations

from pathlib import Path

from aio.config import build
from aio.registry import registry


def small_bars(start: str = "2024-03-04", end: str = "2024-03-07", seed: int = 42):
    from aio.data.synthetic import SyntheticDataConfig

    registry.ensure_discovered()
    market = registry.get("data", "synthetic")(SyntheticDataConfig(start=start, end=end, seed=seed)).load()
    plugin = registry.get_plugin("bars", "time")
    return plugin.obj(build(plugin.config, {"timeframe": "1m", "side": "mid"}, "bars")).build(market)


def small_dataset(out: Path, bars, stride: int = 5, horizons=(5,), window: int = 16, size: int = 32):
    """A chart dataset of ``bars`` (32 px charts of 16 bars, no overlays), labels over ``horizons``."""
    from aio.dataset import build_dataset, dataset_config
    from aio.render import make_renderer

    renderer = make_renderer("candles", {"width": size, "height": size, "bars": window, "overlays": [],
                                         "volume": False, "workers": 1})
    cfg = dataset_config({"stride": stride, "horizons": list(horizons), "progress": False,
                          "regime": {"lookback": 30, "baseline": 120}})
    return build_dataset(bars, {}, cfg, renderer, Path(out))
