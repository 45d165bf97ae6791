"""Typed config of the chart dataset (config group ``dataset``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from aio.config import param
from aio.errors import ConfigError


@dataclass
class FeatureConfig:
    return_lags: list[int] = param(default_factory=lambda: [1, 5, 15, 60], help="log-return lags in bars")
    vol_window: int = param(20, ge=2, le=10000, help="bars in the rolling volatility of 1-bar log returns")
    volume_window: int = param(60, ge=2, le=10000, help="bars in the rolling volume z-score")
    indicators: bool = param(True, help="add the indicator set's values at t as ind_<name> features")


@dataclass
class RegimeConfig:
    """Regime rule (first match wins): volatile, quiet, trending, else ranging.

    v = std of 1-bar log returns over ``lookback``; base = mean of v over the last
    ``baseline`` bars; ER = |close[t] - close[t-lookback]| / sum |close diffs| (Kaufman).
    volatile: v >= volatile_ratio*base; quiet: v <= quiet_ratio*base;
    trending: ER >= trend_er; ranging otherwise.
    """

    lookback: int = param(60, ge=2, le=100000)
    baseline: int = param(1440, ge=2, le=1000000)
    trend_er: float = param(0.3, gt=0.0, lt=1.0)
    volatile_ratio: float = param(1.5, gt=1.0)
    quiet_ratio: float = param(0.6, gt=0.0, lt=1.0)


@dataclass
class TripleBarrierConfig:
    enabled: bool = param(False, help="add triple-barrier labels tb_label/tb_bars/tb_ret_pips")
    take_profit_atr: float = param(2.0, gt=0.0, help="upper barrier: close[t] + k * ATR[t]")
    stop_loss_atr: float = param(1.0, gt=0.0, help="lower barrier: close[t] - k * ATR[t]")
    max_bars: int = param(60, ge=1, le=100000, help="time barrier in bars")


@dataclass
class SplitConfig:
    train: float = param(0.7, gt=0.0, lt=1.0)
    val: float = param(0.15, ge=0.0, lt=1.0)
    test: float = param(0.15, ge=0.0, lt=1.0)
    embargo_bars: Optional[int] = param(None, ge=0, help="bars between splits; null: the longest label horizon")
    folds: int = param(0, ge=0, le=100, help="walk-forward folds over the rows before the test split (0: none)")
    fold_scheme: str = param("expanding", choices=["expanding", "rolling"])

    def __post_init__(self) -> None:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-9:
            raise ConfigError(f"config dataset.split: train+val+test = {total:g}, must be 1")


@dataclass
class StoreConfig:
    format: str = param("lance", choices=["lance", "parquet"], help="Lance (random access) or Parquet")
    path: Optional[str] = param(None, help="store root; null: decided by location. Datasets live in <root>/<hash>/")
    location: str = param("cache", choices=["cache", "run"],
                          help="with path null: cache = <user cache>/aio/datasets, shared by runs (a re-run "
                               "reuses it); run = <run dir>/dataset")
    reuse: bool = param(True, help="reuse a stored dataset with the same input+config hash")
    rows_per_write: int = param(8192, ge=64, help="rows rendered and written per step (bounds memory)")


@dataclass
class DatasetConfig:
    """Windows, features, labels, splits and store of the chart dataset (``dataset=default``)."""

    name: str = "default"
    stride: int = param(5, ge=1, le=100000, help="bars between decision bars")
    horizons: list[int] = param(default_factory=lambda: [5, 15, 60], help="forward-return horizons in bars")
    atr_period: int = param(14, ge=1, le=10000, help="ATR period for ATR-unit labels and barriers")
    dead_zone: float = param(0.25, ge=0.0, help="flat class: net move within +-dead_zone")
    dead_zone_unit: str = param("atr", choices=["atr", "pips"])
    subtract_spread: bool = param(True, help="labels pay the spread at t (mid prices)")
    features: FeatureConfig = field(default_factory=FeatureConfig)
    regime: RegimeConfig = field(default_factory=RegimeConfig)
    triple_barrier: TripleBarrierConfig = field(default_factory=TripleBarrierConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    progress: bool = param(True, help="show a progress bar while rendering")

    def __post_init__(self) -> None:
        if not self.horizons or any(int(h) < 1 for h in self.horizons):
            raise ConfigError(f"config key dataset.horizons={self.horizons!r} must be a non-empty list of bar counts >= 1")
        if any(int(k) < 1 for k in self.features.return_lags):
            raise ConfigError(f"config key dataset.features.return_lags={self.features.return_lags!r} must be >= 1")

    @property
    def label_horizon(self) -> int:
        """The furthest bar any label looks at."""
        h = max(int(x) for x in self.horizons)
        if self.triple_barrier.enabled:
            h = max(h, int(self.triple_barrier.max_bars))
        return h

    @property
    def embargo(self) -> int:
        if self.split.embargo_bars is None:
            return self.label_horizon
        if self.split.embargo_bars < self.label_horizon:
            raise ConfigError(
                f"config key dataset.split.embargo_bars={self.split.embargo_bars} is shorter than the longest label "
                f"horizon ({self.label_horizon} bars): labels of one split would overlap the next. "
                f"Set it >= {self.label_horizon} or null"
            )
        return int(self.split.embargo_bars)


def dataset_config(section: Any) -> DatasetConfig:
    """Validated :class:`DatasetConfig` from the ``dataset`` section of a run config."""
    from aio.config import build

    return build(DatasetConfig, section, "dataset")
