"""Typed config validation: a wrong value names the key, the value and what is allowed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from aio.config import build, param
from aio.errors import ConfigError


@dataclass
class Inner:
    period: int = param(14, ge=2, le=500)


@dataclass
class Sample:
    symbol: str = "EURUSD"
    seed: int = param(7, ge=0)
    vol: float = param(0.08, gt=0.0, le=2.0)
    side: Literal["bid", "ask", "mid"] = "mid"
    timeframe: str = param("1m", choices=["1m", "5m", "1h"])
    flags: list[int] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)
    offline: bool = False
    path: str | None = None


def test_builds_and_coerces_cli_strings():
    cfg = build(Sample, {"seed": "3", "vol": "0.5", "offline": "true", "inner": {"period": 20}, "flags": [1, "2"]}, "data")
    assert cfg.seed == 3 and cfg.vol == 0.5 and cfg.offline is True and cfg.inner.period == 20
    assert cfg.flags == [1, 2]


@pytest.mark.parametrize(
    "mapping, words",
    [
        ({"seed": -1}, "config key data.seed=-1 is out of range: must be >= 0"),
        ({"vol": 0}, "config key data.vol=0.0 is out of range: must be > 0.0 (allowed range [0.0, 2.0])"),
        ({"side": "middle"}, "config key data.side='middle' is not allowed; choose one of: bid, ask, mid"),
        ({"timeframe": "7x"}, "config key data.timeframe='7x' is not allowed; choose one of: 1m, 5m, 1h"),
        ({"seed": 1.5}, "config key data.seed=1.5 must be an integer"),
        ({"offline": "yes"}, "config key data.offline='yes' must be true or false"),
        ({"inner": {"period": 1}}, "config key data.inner.period=1 is out of range"),
        ({"seeed": 1}, "unknown config key data.seeed. Did you mean data.seed?"),
    ],
)
def test_errors_name_key_value_and_allowed(mapping, words):
    with pytest.raises(ConfigError) as info:
        build(Sample, mapping, "data")
    assert words in str(info.value)


def test_optional_fields_accept_null():
    assert build(Sample, {"path": None}, "data").path is None
