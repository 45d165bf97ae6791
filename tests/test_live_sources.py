"""live_source plugins against a real redis-server: schema round trip, consumer group, resume."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import redis

from aio.config import build
from aio.data.synthetic import SyntheticDataConfig, SyntheticSource
from aio.errors import DataError
from aio.live.config import LiveConfig
from aio.live.publish import publish_frame
from aio.live.sources import RedisSource, ReplaySource
from aio.registry import registry
from tests._redis_server import redis_server, redis_url  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def market():
    cfg = build(SyntheticDataConfig, {"start": "2024-03-04", "end": "2024-03-04T03:00"}, "data")
    return SyntheticSource(cfg).load()


def _cfg(url: str, **kw) -> LiveConfig:
    return build(LiveConfig, {"redis_url": url, "stream": "t:ticks", "batch": 500, "block_ms": 50, **kw}, "live")


def _run():
    return SimpleNamespace(cfg={"data": {"symbol": "EURUSD"}})


def _drain(src, limit=10_000):
    frames, ids, end = [], [], False
    for _ in range(limit):
        b = src.read()
        if b is None:
            continue
        if len(b):
            frames.append(b.frame)
            ids += b.ids
        if b.end:
            end = True
            break
    return (pl.concat(frames) if frames else None), ids, end


def test_kinds_are_registered():
    assert {"replay", "redis"} <= set(registry.names("live_source"))


def test_publish_then_read_is_bit_exact(redis_url, market):
    r = redis.Redis.from_url(redis_url)
    n = publish_frame(r, "t:ticks", market.frame, "ticks", batch=700, meta={"symbol": "EURUSD", "synthetic": "true"})
    assert n == market.frame.height
    assert r.xlen("t:ticks") == n + 1  # + end marker
    src = RedisSource(_cfg(redis_url), _run())
    assert src.synthetic and src.symbol == "EURUSD"
    src.open(None)
    frame, ids, end = _drain(src)
    assert end
    assert frame.equals(market.frame)
    assert len(ids) == n and ids == sorted(ids, key=lambda s: tuple(map(int, s.split("-"))))


def test_consumer_group_redelivers_unacked_after_a_crash(redis_url, market):
    r = redis.Redis.from_url(redis_url)
    publish_frame(r, "t:ticks", market.frame.head(3000), "ticks", batch=1000)
    a = RedisSource(_cfg(redis_url), _run())
    a.open(None)
    first = a.read()
    second = a.read()
    assert len(first) == 500 and len(second) == 500
    a.ack(first.ids[-1])  # only the first 500 are journaled; then the process dies
    info = r.xpending("t:ticks", "aio-paper")
    assert info["pending"] == 500
    # restart: same consumer, journal position = the 300th record of the second batch
    b = RedisSource(_cfg(redis_url), _run())
    b.open(second.ids[299])
    frame, ids, end = _drain(b)
    assert end
    assert ids[0] == second.ids[300]  # nothing skipped, nothing read twice
    assert frame.equals(market.frame.slice(800, 2200))
    # a second consumer in the group sees nothing already delivered
    c = RedisSource(_cfg(redis_url, consumer="other"), _run())
    c.open(None)
    assert c.read() is None or len(c.read() or []) == 0


def test_bad_entries_are_named(redis_url):
    r = redis.Redis.from_url(redis_url)
    r.xadd("t:ticks", {"ts_event": "1", "bid": "1.1", "ask": "1.2", "bid_volume": "1"})
    src = RedisSource(_cfg(redis_url), _run())
    src.open(None)
    with pytest.raises(DataError, match="lacks field 'ask_volume'"):
        src.read()
    r.delete("t:ticks")
    r.xadd("t:ticks", {"type": "quote", "x": "1"})
    src = RedisSource(_cfg(redis_url, group="g2"), _run())
    src.open(None)
    with pytest.raises(DataError, match="type='quote' is not tick, bar or eos"):
        src.read()


def test_replay_resumes_after_a_position(market):
    src = ReplaySource.of(market, batch=1000)
    src.open("1499")
    b = src.read()
    assert int(b.ids[0]) == 1500
    assert b.frame.equals(market.frame.slice(1500, 1000))


def test_replay_speed_paces_in_real_time(market):
    import time

    src = ReplaySource.of(market, batch=50, speed=600.0)  # 10 minutes of ticks per second
    src.open(None)
    t0 = time.monotonic()
    got = 0
    while True:
        b = src.read()
        got += len(b)
        ts = market.frame.get_column("ts_event").to_numpy()
        if (ts[got - 1] - ts[0]) / 1e9 >= 120:  # two minutes of data
            break
    assert time.monotonic() - t0 >= 120 / 600.0 * 0.9
    assert np.all(np.diff(market.frame.get_column("ts_event").to_numpy()[:got]) >= 0)
