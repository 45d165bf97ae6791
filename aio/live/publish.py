"""task=publish: a data source's ticks (or bars) into a Redis stream, in the documented schema.

Entries are written in pipelined chunks of ``live.batch`` (XADD with auto ids), then an
end-of-stream entry (``type=eos``). ``<stream>:meta`` (a hash) records the symbol, the
record kind and whether the data is synthetic, so a consumer labels its outputs.
"""

from __future__ import annotations

import time
from typing import Any

import polars as pl
import structlog

from aio.live.sources import BAR_FIELDS, TICK_FIELDS, connect

log = structlog.get_logger(__name__)


def encode_rows(frame: pl.DataFrame, kind: str) -> list[dict[str, str]]:
    """Frame rows -> stream entry fields; floats with repr (exact round trip)."""
    names = TICK_FIELDS if kind == "ticks" else BAR_FIELDS
    cols = [frame.get_column(n).to_list() for n in names]
    typ = "tick" if kind == "ticks" else "bar"
    return [{"type": typ, **{n: repr(v) if isinstance(v, float) else str(v) for n, v in zip(names, row)}}
            for row in zip(*cols)]


def publish_frame(r: Any, stream: str, frame: pl.DataFrame, kind: str, *, batch: int = 1000, speed: float = 0.0,
                  maxlen: int = 0, end: bool = True, meta: dict[str, str] | None = None) -> int:
    if meta:
        r.hset(f"{stream}:meta", mapping={**meta, "kind": kind})
    frame = frame.sort("ts_event", maintain_order=True)
    ts = frame.get_column("ts_event").to_numpy()
    t0_wall, t0_data = time.monotonic(), int(ts[0]) if len(ts) else 0
    n = 0
    for start in range(0, frame.height, batch):
        part = frame.slice(start, batch)
        if speed > 0:
            due = t0_wall + (int(ts[min(start + batch, len(ts)) - 1]) - t0_data) / 1e9 / speed
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        pipe = r.pipeline(transaction=False)
        for fields in encode_rows(part, kind):
            if maxlen:
                pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)
            else:
                pipe.xadd(stream, fields)
        pipe.execute()
        n += part.height
    if end:
        r.xadd(stream, {"type": "eos"})
    return n


def stage_publish(run: Any) -> None:
    from aio.appconfig import plugin_config
    from aio.live.stages import live_config

    cfg = live_config(run.cfg)
    r = connect(cfg.redis_url)
    source_cls, data_cfg = plugin_config("data", run.cfg)
    md = source_cls(data_cfg).load()
    run.market = md
    t0 = time.perf_counter()
    n = publish_frame(r, cfg.stream, md.frame, md.kind, batch=cfg.batch, speed=cfg.speed, maxlen=cfg.maxlen,
                      meta={"symbol": md.symbol, "synthetic": "true" if md.synthetic else "false", "source": md.source})
    dt = time.perf_counter() - t0
    run.metrics["publish"] = {"stream": cfg.stream, "records": n, "kind": md.kind, "seconds": round(dt, 3),
                              "records_per_s": round(n / dt, 1) if dt > 0 else None, "synthetic": md.synthetic}
    log.info("published", stream=cfg.stream, records=n, kind=md.kind, seconds=round(dt, 2))
