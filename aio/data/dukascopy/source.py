"""The ``dukascopy`` data plugin: plan, fetch, cache, catalogue, load.

A run covers the UTC days touching ``[start, end)``. A day whose 24 hours lie far
enough in the past is *final*: all its hours are fetched (or read from the raw
cache), verified, and written as one Parquet day file; later runs read that file and
touch neither the network nor LZMA. Hours of recent days (whose files may still be
published) are fetched for the requested range only and never catalogued; their
empty answers are not cached either. A killed run resumes from the raw cache: every
hour already cached is skipped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

import numpy as np
import polars as pl
import structlog
from aio.progress import bar as tqdm  # rich bars that keep clear of log lines

from aio.data.dukascopy import jsonapi
from aio.data.dukascopy.bi5 import TICK_DTYPE, CorruptFileError, decode_ticks, tick_columns, tick_path
from aio.data.dukascopy.cache import RawCache
from aio.data.dukascopy.catalog import Catalog, frame_from_columns
from aio.data.dukascopy.config import DukascopyConfig
from aio.data.dukascopy.fetch import CircuitOpenError, Fetcher, FetchFailedError, Policy, make_client
from aio.data.dukascopy.instruments import lookup
from aio.data.dukascopy.quality import hour_ranges, quality_report
from aio.errors import DataError
from aio.records import NS_PER_HOUR, MarketData

log = structlog.get_logger(__name__)

# Hours younger than this may not be published yet: their 404s are not cached and
# their days are not catalogued.
SETTLE_HOURS = 6
EMPTY = np.empty(0, dtype=TICK_DTYPE)


def _day_of(hour: int) -> date:
    return (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(hours=int(hour))).date()


def _day_first_hour(day: date) -> int:
    return (day - date(1970, 1, 1)).days * 24


@dataclass
class Plan:
    first_hour: int  # range as hour indices [first_hour, end_hour)
    end_hour: int
    catalogued: list[date]  # final days already in the catalog
    final: list[date]  # final days to build
    recent_hours: list[int]  # in range, ended, on days too young to catalogue
    future_hours: list[int]  # in range, not ended yet

    @property
    def days(self) -> list[date]:
        return sorted(self.catalogued + self.final)


@dataclass
class Outcome:
    """What one run did, per hour source."""

    by_source: dict[str, int] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    days_written: int = 0
    recent: dict[int, np.ndarray] = field(default_factory=dict)
    requests: int = 0
    retries: int = 0
    bytes: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def count(self, source: str) -> None:
        self.by_source[source] = self.by_source.get(source, 0) + 1


class DukascopySource:
    """Dukascopy ticks: bi5 datafeed (JSON API failover), raw cache, Parquet catalog."""

    def __init__(self, cfg: DukascopyConfig):
        self.cfg = cfg
        self.instrument = lookup(cfg.symbol)
        self.symbol = self.instrument.symbol
        cache_dir, catalog_dir = cfg.dirs()
        self.cache = RawCache(cache_dir, self.symbol)
        self.catalog = Catalog(catalog_dir, self.symbol)
        self.start_ns = int(cfg.start_dt.timestamp() * 1_000_000) * 1_000
        self.end_ns = int(cfg.end_dt.timestamp() * 1_000_000) * 1_000
        self._outcome: Outcome | None = None
        self.clock: Callable[[], float] = time.time  # what "now" is; which days are final depends on it

    # -- public contract ------------------------------------------------------------
    def download(self) -> dict[str, Any]:
        """Fetch and store the range (no-op for what is cached); returns a summary."""
        t0 = time.perf_counter()
        plan = self.plan()
        outcome = _run(self._resolve(plan))
        self._outcome = outcome
        summary = self._summary(plan, outcome, time.perf_counter() - t0)
        if outcome.failed:
            raise DataError(self._failure_message(outcome))
        log.info("dukascopy range ready", **{k: summary[k] for k in ("symbol", "days", "days_written", "elapsed_s")})
        return summary

    def load(self) -> MarketData:
        """Ticks of ``[start, end)`` sorted by ts_event, with quality and provenance."""
        summary = self.download()
        plan = self.plan()
        lf = self.catalog.scan(plan.days)
        frame = lf.filter((pl.col("ts_event") >= self.start_ns) & (pl.col("ts_event") < self.end_ns)).collect()
        recent = self._outcome.recent if self._outcome else {}
        if recent:
            cols = [tick_columns(recent[h], h, self.instrument.decimal_factor) for h in sorted(recent)]
            extra = frame_from_columns(cols).filter(
                (pl.col("ts_event") >= self.start_ns) & (pl.col("ts_event") < self.end_ns)
            )
            frame = pl.concat([frame, extra], how="vertical") if frame.height else extra
        quality = quality_report(
            frame,
            plan.first_hour,
            plan.end_hour,
            decimal_factor=self.instrument.decimal_factor,
            pip=self.instrument.pip,
            trades_weekends=self.instrument.trades_weekends,
            unavailable_hours=np.asarray(plan.future_hours, dtype=np.int64),
        )
        quality.update(
            source="dukascopy",
            symbol=self.symbol,
            start=self.cfg.start_dt.isoformat(),
            end=self.cfg.end_dt.isoformat(),
            volume_units="millions of base units (bi5 float32)",
            json_api_hours=summary["hours"].get("json_api", 0),
            download={k: summary[k] for k in ("requests", "retries", "failure_reasons", "hours")},
        )
        return MarketData(
            kind="ticks",
            frame=frame,
            symbol=self.symbol,
            synthetic=False,
            point=self.instrument.point,
            pip=self.instrument.pip,
            source="dukascopy",
            meta={
                "instrument": self.instrument.name,
                "description": self.instrument.description,
                "decimal_factor": self.instrument.decimal_factor,
                "start": self.cfg.start_dt.isoformat(),
                "end": self.cfg.end_dt.isoformat(),
                "base_url": self.cfg.base_url,
                "catalog": str(self.catalog.symbol_dir),
                "days": [d.isoformat() for d in plan.days],
            },
            quality=quality,
        )

    # -- planning -------------------------------------------------------------------
    def plan(self) -> Plan:
        now_hour = int(self.clock() // 3600)
        first = self.start_ns // NS_PER_HOUR
        end = -(-self.end_ns // NS_PER_HOUR)
        catalogued, final, recent, future = [], [], [], []
        day = _day_of(first)
        while _day_first_hour(day) < end:
            h0 = _day_first_hour(day)
            if h0 + 24 <= now_hour - SETTLE_HOURS:
                (catalogued if self.catalog.has(day) else final).append(day)
            else:
                for h in range(max(h0, first), min(h0 + 24, end)):
                    (recent if h < now_hour else future).append(h)
            day += timedelta(days=1)
        return Plan(first, end, catalogued, final, recent, future)

    # -- the run --------------------------------------------------------------------
    async def _resolve(self, plan: Plan) -> Outcome:
        out = Outcome()
        todo = len(plan.final) * 24 + len(plan.recent_hours)
        if todo == 0:
            return out
        cfg = self.cfg
        policy = Policy(cfg.concurrency, cfg.retries, cfg.timeout_s, cfg.backoff_s, cfg.backoff_max_s,
                        cfg.breaker_failures)
        bar = tqdm(total=todo, unit="h", desc=f"{self.symbol} hours", disable=not cfg.progress, leave=False)
        async with make_client(policy) as client:
            self._bi5 = Fetcher(client, policy, "bi5 datafeed")
            self._json = Fetcher(client, policy, "JSON API") if cfg.failover == "json_api" else None
            self._bar = bar
            # days in flight are bounded so decoded hours don't pile up in memory
            day_slots = asyncio.Semaphore(max(2, cfg.concurrency))

            async def day_task(day: date) -> None:
                async with day_slots:
                    await self._build_day(day, out)

            async def recent_task(h: int) -> None:
                arr = await self._hour(h, out, cache_empty=False)
                if arr is not None:
                    out.recent[h] = arr

            try:
                await asyncio.gather(*(day_task(d) for d in plan.final), *(recent_task(h) for h in plan.recent_hours))
            finally:
                bar.close()
        for f in (self._bi5, self._json):
            if f is not None:
                out.requests += f.stats.requests
                out.retries += f.stats.retries
                out.bytes += f.stats.bytes
                for k, v in f.stats.reasons.items():
                    out.reasons[f"{f.name}: {k}"] = out.reasons.get(f"{f.name}: {k}", 0) + v
        return out

    async def _build_day(self, day: date, out: Outcome) -> None:
        h0 = _day_first_hour(day)
        await asyncio.to_thread(self.cache.sweep_tmp, self.cache.path(h0).parent)  # leftovers of killed runs
        arrays = await asyncio.gather(*(self._hour(h, out, cache_empty=True) for h in range(h0, h0 + 24)))
        if any(a is None for a in arrays):
            return  # a failed hour: the day stays uncatalogued, its good hours stay cached
        f = self.instrument.decimal_factor
        cols = [tick_columns(a, h0 + i, f) for i, a in enumerate(arrays) if a.size]
        frame = frame_from_columns(cols)
        await asyncio.to_thread(self.catalog.write, day, frame)
        out.days_written += 1

    async def _hour(self, hour: int, out: Outcome, *, cache_empty: bool) -> np.ndarray | None:
        """Records of one hour (cache, then bi5 feed, then failover); None when it failed."""
        try:
            cached = await asyncio.to_thread(self._read_cached, hour)
            if cached is not None:
                out.count("cache")
                return cached
            if self.cfg.offline:
                out.failed[hour] = "not cached (offline)"
                return None
            return await self._fetch_hour(hour, out, cache_empty)
        finally:
            self._bar.update(1)

    def _read_cached(self, hour: int) -> np.ndarray | None:
        found = self.cache.find(hour)
        if found is None:
            return None
        ext, path = found
        data = path.read_bytes()
        try:
            if ext == "bi5":
                return decode_ticks(data)
            return jsonapi.decode_json_ticks(data, hour, self.instrument.decimal_factor)
        except CorruptFileError as exc:
            # only verified files are written, so this is disk damage or a foreign file
            log.warning("cached file failed verification; fetching it again", path=str(path), reason=str(exc))
            self.cache.drop(hour)
            return None

    async def _fetch_hour(self, hour: int, out: Outcome, cache_empty: bool) -> np.ndarray | None:
        url = f"{self.cfg.base_url.rstrip('/')}/{tick_path(self.symbol, hour)}"
        try:
            got = await self._bi5.get(url, decode_ticks)
        except (FetchFailedError, CircuitOpenError) as exc:
            if self._json is None:
                out.failed[hour] = str(exc)
                return None
            return await self._failover(hour, out, str(exc))
        if got is None or not got[0]:
            if cache_empty:
                await asyncio.to_thread(self.cache.put, hour, b"")
            out.count("empty")
            return EMPTY
        body, arr = got
        await asyncio.to_thread(self.cache.put, hour, body)
        out.count("bi5")
        return arr

    async def _failover(self, hour: int, out: Outcome, why: str) -> np.ndarray | None:
        url = jsonapi.tick_url(self.cfg.json_api_url, self.instrument.json_code, hour)
        factor = self.instrument.decimal_factor
        try:
            got = await self._json.get(url, lambda b: jsonapi.decode_json_ticks(b, hour, factor))
        except (FetchFailedError, CircuitOpenError) as exc:
            out.failed[hour] = f"{why}; failover: {exc}"
            return None
        if got is None:
            out.failed[hour] = f"{why}; failover: 404 for {url}"
            return None
        body, arr = got
        await asyncio.to_thread(self.cache.put, hour, body, "json")
        out.count("json_api")
        return arr

    # -- reporting ------------------------------------------------------------------
    def _summary(self, plan: Plan, out: Outcome, elapsed: float) -> dict[str, Any]:
        src = out.by_source
        return {
            "symbol": self.symbol,
            "start": self.cfg.start_dt.isoformat(),
            "end": self.cfg.end_dt.isoformat(),
            "days": len(plan.days),
            "days_catalogued_before": len(plan.catalogued),
            "days_written": out.days_written,
            "hours": dict(src) | {"failed": len(out.failed)},
            "recent_hours": len(plan.recent_hours),
            "future_hours": len(plan.future_hours),
            "requests": out.requests,
            "retries": out.retries,
            "bytes": out.bytes,
            "failure_reasons": dict(out.reasons),
            "elapsed_s": round(elapsed, 3),
            "cache_dir": str(self.cache.root),
            "catalog_dir": str(self.catalog.root),
        }

    def _failure_message(self, out: Outcome) -> str:
        hours = np.array(sorted(out.failed), dtype=np.int64)
        ranges = hour_ranges(hours)
        shown = ", ".join(ranges[:10]) + (f" (+{len(ranges) - 10} more ranges)" if len(ranges) > 10 else "")
        first_reason = out.failed[int(hours[0])]
        if self.cfg.offline:
            return (
                f"data.offline=true but {len(hours)} hours of {self.symbol} are not cached: {shown}. "
                f"Run once without data.offline=true (or `python -m aio task=download data=dukascopy "
                f"data.symbol={self.symbol} data.start={self.cfg.start} data.end={self.cfg.end}`) to fetch them; "
                f"cache: {self.cache.root}"
            )
        return (
            f"{len(hours)} hours of {self.symbol} could not be fetched: {shown}; first reason: {first_reason}. "
            "Every hour that succeeded is cached: re-run the same command to resume"
            + ("" if self.cfg.failover == "json_api" else ", or set data.failover=json_api")
            + f". Feed: {self.cfg.base_url}"
        )


def _run(coro):
    """Run a coroutine from sync code, also when the caller already has an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, coro).result()
