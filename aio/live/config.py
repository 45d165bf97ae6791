"""The ``live`` section: where ticks come from, the journal, control and its signing."""

from __future__ import annotations

from dataclasses import dataclass

from aio.config import param


@dataclass
class LiveConfig:
    """One paper run (task=paper), the publisher (task=publish) and the controller (task=control)."""

    source: str = param("replay", help="live_source plugin: replay (a data source's ticks/bars) or redis (a stream)")
    speed: float = param(0.0, ge=0, help="replay speed multiple of real time; 0 = as fast as possible")
    batch: int = param(1000, ge=1, help="ticks handed to the engine per read (a replay chunk, an XREADGROUP count)")
    redis_url: str = param("redis://127.0.0.1:6379/0", help="Redis server of the tick, command and reply streams")
    stream: str = param("aio:ticks:EURUSD", help="Redis stream of ticks (task=publish writes it, source=redis reads it)")
    group: str = param("aio-paper", help="consumer group reading the tick stream")
    consumer: str = param("paper-1", help="this engine's consumer name in the group")
    block_ms: int = param(1000, ge=0, help="XREADGROUP block time; the engine checks control in between")
    idle_exit_s: float = param(0.0, ge=0, help="stop when no tick arrived for this long (0: wait for the end marker)")
    close_after_ms: int = param(0, ge=0, help="redis, real-time feeds: close the open bar this long after its close "
                                              "time by the wall clock when no later tick came (0: a later tick or "
                                              "the end marker closes it, as in the batch)")
    maxlen: int = param(0, ge=0, help="task=publish: approximate stream cap (XADD MAXLEN ~); 0 = uncapped")
    journal: str = param("journal.sqlite", help="journal file in the run folder (SQLite, WAL)")
    window: int = param(0, ge=0, help="bars of history the rules see at each close, re-evaluated in full; 0 = all "
                                      "(exact); N > 0 is exact only for indicators without memory")
    incremental: bool = param(True, help="window 0: decide bar by bar (TA-Lib streaming handles, O(1) per close, "
                                         "bit-identical to the batch); false: re-evaluate the whole history per close")
    audit_every: int = param(1000, ge=0, help="incremental: every N bars (and at the end) check all decisions so far "
                                              "against one batch evaluation; a difference stops the run; 0 = never")
    control: bool = param(False, help="accept signed commands on the command stream")
    commands: str = param("aio:live:commands", help="Redis stream of control commands")
    replies: str = param("aio:live:replies", help="Redis stream of acknowledgements")
    secret: str | None = param(None, help="HMAC-SHA256 key for commands; ${oc.env:AIO_LIVE_SECRET} in YAML")
    max_age_s: float = param(60.0, gt=0, help="commands older than this (or from the future) are refused as stale")
    reply_timeout_s: float = param(10.0, gt=0, help="task=control: how long to wait for the engine's reply")
    library: str | None = param(None, help="strategy library (LanceDB folder) for reload; default: store.uri")
