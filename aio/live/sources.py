"""Live sources (registry kind ``live_source``): where a paper run's ticks come from.

A source hands the engine :class:`Batch` es of ticks (or of finished bars) in
arrival order. Every record carries a *position* (``ids``) that the journal keeps
for the last record of each closed bar; on a restart the source is opened *after*
that position, so nothing is read twice into a bar and nothing is skipped.
``ack(position)`` tells the source that everything up to it is in the journal
(Redis: ``XACK``; a Kafka source would commit its offsets here).

Interface of a plugin (``registry.add("live_source", NAME, Factory)``)::

    src = Factory(live_cfg, run)      # run: aio.pipeline.Run (config, data plugin)
    src.open(after)                   # after: position string from the journal, or None
    batch = src.read()                # Batch, or None when nothing arrived in time
    src.ack(position)                 # records up to position are journaled
    src.close()
    src.synthetic, src.symbol         # provenance for the run's outputs

Redis message schema (one stream entry per record, values as strings)::

    tick:  type=tick (optional) ts_event=<int ns UTC> bid=<float> ask=<float>
           bid_volume=<float> ask_volume=<float>
    bar:   type=bar ts_event ts_init open high low close volume ticks spread_mean
    end:   type=eos   (the publisher's end of stream: the engine closes the last bar)

Floats are written with ``repr`` so they read back bit for bit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import structlog

from aio.errors import ConfigError, DataError
from aio.records import BAR_SCHEMA, TICK_SCHEMA

log = structlog.get_logger(__name__)

TICK_FIELDS = list(TICK_SCHEMA)
BAR_FIELDS = list(BAR_SCHEMA)


@dataclass
class Batch:
    """Records that arrived together, in order. ``kind`` is "ticks" or "bars"."""

    kind: str
    frame: pl.DataFrame  # TICK_SCHEMA or BAR_SCHEMA columns
    ids: Any  # position of each record: list[str], or an int array (replay: record indices)
    received_ns: int = 0  # time.perf_counter_ns() when the batch arrived
    end: bool = False  # the stream ends after this batch
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.frame.height


# -- replay ------------------------------------------------------------------------------


class ReplaySource:
    """Any data source's ticks (or bars) replayed in order at ``speed`` x real time (0: at once).

    Positions are record indices, so a restart re-opens the same data after the last
    journaled record. The data plugin is the run's own ``data`` section.
    """

    def __init__(self, cfg: Any, run: Any) -> None:
        from aio.appconfig import plugin_config

        source_cls, data_cfg = plugin_config("data", run.cfg)
        self._init(source_cls(data_cfg).load(), cfg.speed, cfg.batch)

    @classmethod
    def of(cls, md: Any, *, speed: float = 0.0, batch: int = 1000) -> "ReplaySource":
        """A replay of MarketData already in memory (tests, benchmarks)."""
        self = cls.__new__(cls)
        self._init(md, speed, batch)
        return self

    def _init(self, md: Any, speed: float, batch: int) -> None:
        self.market = md
        self.kind = md.kind
        self.frame = md.frame.sort("ts_event", maintain_order=True)
        self.synthetic = md.synthetic
        self.symbol = md.symbol
        self.speed = float(speed)
        self.batch = int(batch)
        self.pos = 0
        self._t0_wall: float | None = None
        self._t0_data: int | None = None

    def open(self, after: str | None) -> None:
        self.pos = 0 if after is None else int(after) + 1
        if self.pos > self.frame.height:
            raise DataError(f"journal position {after} is beyond the replayed data ({self.frame.height} records): "
                            "the data changed since the run started; use a new hydra.run.dir")

    def read(self) -> Batch | None:
        n = self.frame.height
        if self.pos >= n:
            return Batch(self.kind, self.frame.head(0), [], time.perf_counter_ns(), end=True)
        stop = min(n, self.pos + self.batch)
        part = self.frame.slice(self.pos, stop - self.pos)
        if self.speed > 0:
            ts = part.get_column("ts_event")
            self._pace(int(ts[0]), int(ts[-1]))
        ids = np.arange(self.pos, stop, dtype=np.int64)  # positions are record indices
        self.pos = stop
        return Batch(self.kind, part, ids, time.perf_counter_ns(), end=stop >= n)

    def _pace(self, ts_first: int, ts_last: int) -> None:
        # a batch is handed over when its last record is due in (scaled) real time
        if self._t0_wall is None:
            self._t0_wall, self._t0_data = time.monotonic(), ts_first
        due = self._t0_wall + (ts_last - self._t0_data) / 1e9 / self.speed
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def ack(self, position: str) -> None:  # the data is the position: nothing to commit
        pass

    def close(self) -> None:
        pass


# -- redis streams ---------------------------------------------------------------------


def _sid(s: str | bytes) -> tuple[int, int]:
    s = s.decode() if isinstance(s, bytes) else s
    a, _, b = s.partition("-")
    return int(a), int(b or 0)


def connect(url: str):
    import redis

    try:
        r = redis.Redis.from_url(url, socket_timeout=30)
        r.ping()
    except Exception as exc:
        raise ConfigError(f"config key live.redis_url={url!r}: cannot reach Redis ({exc}); start redis-server "
                          "or point live.redis_url at one") from None
    return r


def decode_entries(entries: list, kind_hint: str | None = None) -> tuple[str | None, pl.DataFrame | None, list[str], bool]:
    """Stream entries -> (kind, frame, ids, end). Bad entries raise DataError naming the id and field."""
    ids: list[str] = []
    rows: dict[str, list] = {}
    kind = kind_hint
    end = False
    for sid, fields in entries:
        sid = sid.decode() if isinstance(sid, bytes) else sid
        f = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
             for k, v in fields.items()}
        typ = f.get("type", "tick")
        if typ == "eos":
            end = True
            ids.append(sid)
            break
        rkind = "ticks" if typ == "tick" else "bars" if typ == "bar" else None
        if rkind is None:
            raise DataError(f"stream entry {sid}: type={typ!r} is not tick, bar or eos (see docs/live.md, message schema)")
        if kind is None:
            kind = rkind
        elif kind != rkind:
            raise DataError(f"stream entry {sid}: a {typ} among {kind}; one stream carries ticks or bars, not both")
        names = TICK_FIELDS if rkind == "ticks" else BAR_FIELDS
        for name in names:
            if name not in f:
                raise DataError(f"stream entry {sid} lacks field {name!r}; a {typ} needs {', '.join(names)}")
            rows.setdefault(name, []).append(f[name])
        ids.append(sid)
    if not rows:
        return kind, None, ids, end
    schema = TICK_SCHEMA if kind == "ticks" else BAR_SCHEMA
    try:
        frame = pl.DataFrame({k: pl.Series(k, v).cast(schema[k]) for k, v in rows.items()}, strict=False)
    except Exception as exc:
        raise DataError(f"stream entries {ids[0]}..{ids[-1]}: a field is not a number ({exc})") from None
    return kind, frame, ids, end


class RedisSource:
    """Ticks (or bars) from a Redis stream through a consumer group (XREADGROUP / XACK).

    Entries stay pending until their bar is in the journal; a restarted engine with
    the same consumer name first re-reads its pending entries (id 0), skipping those at
    or before the journal's position, then new ones (id >).
    """

    def __init__(self, cfg: Any, run: Any) -> None:
        self.cfg = cfg
        self.r = connect(cfg.redis_url)
        self.stream, self.group, self.consumer = cfg.stream, cfg.group, cfg.consumer
        self.kind: str | None = None
        self.after: tuple[int, int] | None = None
        self.pending_phase = True
        meta = self.r.hgetall(f"{self.stream}:meta") or {}
        meta = {k.decode(): v.decode() for k, v in meta.items()}
        self.synthetic = meta.get("synthetic", "false") == "true"
        self.symbol = meta.get("symbol") or str((run.cfg.get("data") or {}).get("symbol", ""))
        self.kind = meta.get("kind")
        self._idle_since = time.monotonic()

    def open(self, after: str | None) -> None:
        import redis

        self.after = _sid(after) if after else None
        try:
            self.r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self.pending_phase = True
        self._cursor = "0"

    def read(self) -> Batch | None:
        pending = self.pending_phase
        start = self._cursor if pending else ">"
        resp = self.r.xreadgroup(self.group, self.consumer, {self.stream: start}, count=self.cfg.batch,
                                 block=None if pending else self.cfg.block_ms)
        received = time.perf_counter_ns()
        entries = resp[0][1] if resp else []
        if pending and not entries:
            self.pending_phase = False  # our pending list is drained: new entries from here
            return self.read()
        if not entries:
            if self.cfg.idle_exit_s and time.monotonic() - self._idle_since > self.cfg.idle_exit_s:
                return Batch(self.kind or "ticks", pl.DataFrame(schema=TICK_SCHEMA), [], received, end=True)
            return None
        self._idle_since = time.monotonic()
        if pending:
            # pending entries come back from the id given: page on from the last one, and
            # skip those already in a journaled bar (killed between journal and XACK)
            last = entries[-1][0]
            self._cursor = last.decode() if isinstance(last, bytes) else last
            entries = [e for e in entries if self.after is None or _sid(e[0]) > self.after]
        kind, frame, ids, end = decode_entries(entries, self.kind)
        self.kind = kind or self.kind
        if frame is None:
            frame = pl.DataFrame(schema=TICK_SCHEMA if (self.kind or "ticks") == "ticks" else BAR_SCHEMA)
        return Batch(self.kind or "ticks", frame, ids[:-1] if end else ids, received, end=end,
                     meta={"eos_id": ids[-1] if end else None})

    def ack(self, position: str) -> None:
        """XACK every entry of ours up to ``position`` (its bar is journaled)."""
        upto = _sid(position)
        while True:
            pend = self.r.xpending_range(self.stream, self.group, min="-", max=position, count=1000,
                                         consumername=self.consumer)
            ids = [p["message_id"] for p in pend if _sid(p["message_id"]) <= upto]
            if not ids:
                return
            self.r.xack(self.stream, self.group, *ids)
            if len(pend) < 1000:
                return

    def close(self) -> None:
        self.r.close()


def register(registry) -> None:
    registry.add("live_source", "replay", ReplaySource,
                 description="a data source's ticks or bars replayed at a speed multiple (0: as fast as possible)")
    registry.add("live_source", "redis", RedisSource,
                 description="Redis Streams through a consumer group (XREADGROUP/XACK); schema in docs/live.md")
