"""The dukascopy plugin's config contract, registration and retry arithmetic."""

from __future__ import annotations

import dataclasses
import random
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from aio.config import build
from aio.data.dukascopy import DukascopyConfig, DukascopySource, register
from aio.data.dukascopy.fetch import Policy, backoff_delay, retry_after_s
from aio.errors import ConfigError
from aio.registry import Registry

REPO = Path(__file__).resolve().parent.parent
YAML = REPO / "conf" / "data" / "dukascopy.yaml"


def test_yaml_lists_every_field_with_the_dataclass_default():
    doc = yaml.safe_load(YAML.read_text())
    assert doc["name"] == "dukascopy"
    fields = {f.name: f.default for f in dataclasses.fields(DukascopyConfig)}
    assert set(doc) == set(fields)
    for k, default in fields.items():
        assert doc[k] == default, k
    cfg = build(DukascopyConfig, doc, "data")
    assert cfg.base_url == "https://datafeed.dukascopy.com/datafeed" and cfg.failover == "none"
    assert cfg.start_dt == datetime(2024, 3, 4, tzinfo=timezone.utc)


def test_registered_as_data_plugin():
    reg = Registry()
    register(reg)
    plugin = reg.plugins["data"]["dukascopy"]
    assert plugin.obj is DukascopySource and plugin.config is DukascopyConfig


@pytest.mark.parametrize(
    "over,match",
    [
        ({"start": "2024-03-05", "end": "2024-03-05"}, "must be after data.start"),
        ({"start": "yesterday"}, "data.start='yesterday' is not a UTC date"),
        ({"start": "1999-01-01"}, "before the datafeed"),
        ({"concurrency": 0}, r"data.concurrency=0 is out of range"),
        ({"concurrency": 500}, r"data.concurrency=500 is out of range"),
        ({"failover": "ftp"}, "choose one of: none, json_api"),
        ({"timeout_s": 0}, "data.timeout_s"),
        ({"base_url": "datafeed.dukascopy.com"}, "http"),
        ({"symbol": "EURUSX"}, "close matches: EURUSD"),
        ({"sybmol": "EURUSD"}, "Did you mean data.symbol"),
    ],
)
def test_bad_values_name_key_and_fix(over, match):
    with pytest.raises(ConfigError, match=match):
        build(DukascopyConfig, over, "data")


def test_dates_and_datetimes_are_utc():
    cfg = build(DukascopyConfig, {"start": "2024-03-04T13:30", "end": "2024-03-04T15:00+01:00"}, "data")
    assert cfg.start_dt == datetime(2024, 3, 4, 13, 30, tzinfo=timezone.utc)
    assert cfg.end_dt == datetime(2024, 3, 4, 14, 0, tzinfo=timezone.utc)
    zulu = build(DukascopyConfig, {"end": "2024-03-18T00:00:00Z"}, "data")
    assert zulu.end_dt == datetime(2024, 3, 18, tzinfo=timezone.utc)


def test_default_dirs_are_per_user_cache(tmp_path):
    cache, catalog = build(DukascopyConfig, {}, "data").dirs()
    assert cache.parts[-2:] == ("dukascopy", "raw") and catalog.parts[-2:] == ("dukascopy", "catalog")
    over = {"cache_dir": str(tmp_path / "a"), "catalog_dir": str(tmp_path / "b")}
    c2, k2 = build(DukascopyConfig, over, "data").dirs()
    assert (c2, k2) == (tmp_path / "a", tmp_path / "b")


def test_backoff_grows_with_jitter_honours_retry_after_and_is_capped():
    p = Policy(backoff_s=0.5, backoff_max_s=8.0)
    rng = random.Random(3)
    for attempt in range(6):
        base = min(8.0, 0.5 * 2**attempt)
        d = [backoff_delay(p, attempt, None, rng) for _ in range(50)]
        assert all(base / 2 <= x <= base for x in d) and len(set(d)) > 1
    assert backoff_delay(p, 0, 5.0, rng) == 5.0  # Retry-After wins over a shorter backoff
    assert backoff_delay(p, 0, 3600.0, rng) == 8.0  # but never beyond the cap


def test_retry_after_header_forms():
    assert retry_after_s("7") == 7.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None
    later = datetime.now(timezone.utc) + timedelta(seconds=30)
    assert 25 <= retry_after_s(format_datetime(later, usegmt=True)) <= 31
