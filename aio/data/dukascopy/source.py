"""The ``dukascopy`` data plugin: plan, fetch, cache, catalogue, load.

A run covers the UTC days touching ``[start, end)``. A day whose 24 hours lie far
enough in the past is *final*: all its hours are fetched (or read from the raw
cache), verified, and written as one Parquet day file; later runs read that file and
touch neither the network nor LZMA. Hours of recent days (whose files may still be
published) are fetched for the requested range only and never catalogued; their
empty answers are not cached either. A killed run resumes from the raw cache: every
hour already cached is skipped.

An empty answer (404 or a 0-byte file) is believed only where the market calendar
expects one: inside market hours, an empty hour whose run of empty hours has ticks on
both sides is ``suspect_empty`` (:func:`quality.suspect_empty`). It is asked from the
JSON API when ``failover=json_api``; if that has nothing either it is recorded as
suspect in the raw cache (never as a verified empty hour), its day is kept out of the
catalog so the next run asks again, the summary and ``data_quality.json`` list it, and
the run warns (``strict=true``: fails).
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
from aio.data.dukascopy.catalog import NO_RECORD, Catalog, frame_from_columns
from aio.data.dukascopy.config import DukascopyConfig
from aio.data.dukascopy.fetch import CircuitOpenError, Fetcher, FetchFailedError, Policy, make_client
from aio.data.dukascopy.instruments import lookup
from aio.data.dukascopy.locks import POLL_S, HourLocks
from aio.data.dukascopy.quality import MAX_LISTED, hour_ranges, market_closed, quality_report, suspect_empty
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
    fresh_empty: dict[int, str] = field(default_factory=dict)  # empty answers of final days, not judged yet
    suspect: dict[int, str] = field(default_factory=dict)  # hour -> why it looks like a hole
    held: dict[int, np.ndarray] = field(default_factory=dict)  # ticks of days kept out of the catalog
    days_held: int = 0

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
        self._verified: set[tuple[date, int, int]] = set()  # (day, mtime_ns, size) checked this run
        self.rebuilt: dict[str, str] = {}  # day file -> why it failed its self-check
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
        if outcome.suspect:
            self._suspect_alarm(outcome, summary)
        log.info("dukascopy range ready", **{k: summary[k] for k in ("symbol", "days", "days_written", "elapsed_s")})
        return summary

    def load(self) -> MarketData:
        """Ticks of ``[start, end)`` sorted by ts_event, with quality and provenance."""
        summary = self.download()
        plan = self.plan()
        out = self._outcome or Outcome()
        days = [d for d in plan.days if self.catalog.has(d)]
        lf = self.catalog.scan(days)
        try:
            frame = lf.filter((pl.col("ts_event") >= self.start_ns) & (pl.col("ts_event") < self.end_ns)).collect()
        except (pl.exceptions.PolarsError, OSError) as exc:  # checked a moment ago: changed under us since
            raise DataError(
                f"catalog files of {self.symbol} changed while this run read them ({type(exc).__name__}: {exc}); "
                f"days {days[0]}..{days[-1]} under {self.catalog.symbol_dir}. Re-run: each day file is checked "
                "against its record and rebuilt from the raw cache when damaged"
            ) from None
        loose = {**out.recent, **out.held}  # hours not (yet) in the catalog
        if loose:
            cols = [tick_columns(loose[h], h, self.instrument.decimal_factor) for h in sorted(loose)]
            extra = frame_from_columns(cols).filter(
                (pl.col("ts_event") >= self.start_ns) & (pl.col("ts_event") < self.end_ns)
            )
            frame = pl.concat([frame, extra], how="vertical") if frame.height else extra
            if not frame.get_column("ts_event").is_sorted():  # a held day sits between catalogued ones
                frame = frame.sort("ts_event", maintain_order=True)
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
            download={k: summary[k] for k in ("requests", "retries", "failure_reasons", "hours", "days_rebuilt")},
            suspect_empty_hours=len(out.suspect),
            suspect_empty=summary["suspect_empty"][:MAX_LISTED],
        )
        if out.suspect:
            quality["suspect_empty_note"] = (
                "empty answers inside market hours with ticks on both sides: not cached as empty, their days not "
                "catalogued, asked again on the next run"
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
                (catalogued if self._usable(day) else final).append(day)
            else:
                for h in range(max(h0, first), min(h0 + 24, end)):
                    (recent if h < now_hour else future).append(h)
            day += timedelta(days=1)
        return Plan(first, end, catalogued, final, recent, future)

    def _usable(self, day: date) -> bool:
        """Is the day in the catalog and intact? A damaged day file is removed (to be rebuilt)."""
        path = self.catalog.day_path(day)
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        key = (day, st.st_mtime_ns, st.st_size)
        if key in self._verified:
            return True
        why = self.catalog.verify(day)
        if why == NO_RECORD:
            why = self.catalog.adopt(day)
            if why is None:
                log.info("catalog day file had no record: read it whole, recorded it", path=str(path))
        if why is None:
            self._verified.add(key)
            return True
        log.warning("catalog day file failed its self-check; rebuilding it from the raw cache (or the feed)",
                    path=str(path), reason=why)
        self.rebuilt[str(path)] = why
        self.catalog.drop(day)
        return False

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

            self._locks = HourLocks(self.cache.root, self.symbol)
            self._slots = asyncio.Semaphore(cfg.concurrency)
            try:
                await asyncio.gather(*(day_task(d) for d in plan.final), *(recent_task(h) for h in plan.recent_hours))
            finally:
                bar.close()
                self._locks.close()
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
        arrays = list(await asyncio.gather(*(self._hour(h, out, cache_empty=True) for h in range(h0, h0 + 24))))
        if any(a is None for a in arrays):
            return  # a failed hour: the day stays uncatalogued, its good hours stay cached
        suspect = await self._judge_empty(h0, arrays, out)
        if suspect:
            # not catalogued, so the next run asks for the suspect hours again; this run uses what it has
            out.held.update({h0 + i: a for i, a in enumerate(arrays) if a.size})
            out.days_held += 1
            return
        f = self.instrument.decimal_factor
        cols = [tick_columns(a, h0 + i, f) for i, a in enumerate(arrays) if a.size]
        frame = frame_from_columns(cols)
        await asyncio.to_thread(self.catalog.write, day, frame)
        out.days_written += 1

    async def _judge_empty(self, h0: int, arrays: list[np.ndarray], out: Outcome) -> list[int]:
        """Settle the day's empty answers: believed ones are cached as empty, suspect ones are
        tried on the JSON API, then recorded as suspect. Returns the hours still suspect."""
        fresh = [h for h in range(h0, h0 + 24) if h in out.fresh_empty]
        if not fresh:
            return []
        has = np.array([a.size > 0 for a in arrays])
        sus = suspect_empty(h0, has, self.instrument.trades_weekends)
        reasons = {h: out.fresh_empty.pop(h) for h in fresh}
        suspects = []
        for h in fresh:
            if sus[h - h0]:
                suspects.append(h)
            else:
                await asyncio.to_thread(self.cache.put, h, b"")
                out.count("empty")
        if self._json is not None and suspects:
            answers = await asyncio.gather(*(self._json_hour(h, out) for h in suspects))
            for h, (arr, why) in zip(list(suspects), answers):
                if arr is not None:
                    arrays[h - h0] = arr
                    suspects.remove(h)
                else:
                    reasons[h] = f"{reasons[h]}; {why}"
        for h in suspects:
            out.suspect[h] = reasons[h]
            out.count("suspect_empty")
            await asyncio.to_thread(self.cache.mark_suspect, h, reasons[h])
        return suspects

    async def _json_hour(self, hour: int, out: Outcome) -> tuple[np.ndarray | None, str]:
        """Ticks of a suspect hour from the JSON API (cached), or None and why not."""
        url = jsonapi.tick_url(self.cfg.json_api_url, self.instrument.json_code, hour)
        factor = self.instrument.decimal_factor
        try:
            got = await self._json.get(url, lambda b: jsonapi.decode_json_ticks(b, hour, factor))
        except (FetchFailedError, CircuitOpenError) as exc:
            return None, f"JSON API failed: {exc}"
        if got is None:
            return None, "JSON API: 404"
        body, arr = got
        if arr.size == 0:
            return None, "JSON API: no ticks either"
        await asyncio.to_thread(self.cache.put, hour, body, "json")
        out.count("json_api")
        return arr, ""

    async def _hour(self, hour: int, out: Outcome, *, cache_empty: bool) -> np.ndarray | None:
        """Records of one hour (cache, then bi5 feed, then failover); None when it failed."""
        try:
            cached = await asyncio.to_thread(self._read_cached, hour)
            if cached is not None:
                out.count("cache")
                return cached
            if self.cfg.offline:
                why = self.cache.suspect(hour) if cache_empty else None
                if why is not None:  # judged again with the day, as if just answered
                    out.fresh_empty[hour] = f"{why} (recorded by an earlier run)"
                    return EMPTY
                out.failed[hour] = "not cached (offline)"
                return None
            wait = POLL_S[0]
            while True:
                # a slot first, then the hour's lock: a run holds only the hours it is fetching
                async with self._slots:
                    if self._locks.try_lock(hour):
                        try:
                            cached = await asyncio.to_thread(self._read_cached, hour)  # the other run's work
                            if cached is not None:
                                out.count("cache")
                                return cached
                            return await self._fetch_hour(hour, out, cache_empty)
                        finally:
                            self._locks.unlock(hour)
                await asyncio.sleep(wait)  # another run is fetching it: other hours first
                wait = min(2 * wait, POLL_S[1])
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
            if cache_empty and market_closed(np.array([hour]), self.instrument.trades_weekends)[0]:
                await asyncio.to_thread(self.cache.put, hour, b"")  # the calendar expects it
                out.count("empty")
            elif cache_empty:  # believed or not once the day's other hours are known
                out.fresh_empty[hour] = "404" if got is None else "empty file (HTTP 200, 0 bytes)"
            else:
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
            "days_held_out": out.days_held,
            "days_rebuilt": dict(self.rebuilt),
            "hours": dict(src) | {"failed": len(out.failed)},
            "suspect_empty": hour_ranges(np.array(sorted(out.suspect), dtype=np.int64)),
            "suspect_empty_reasons": {r: sum(1 for v in out.suspect.values() if v == r)
                                      for r in dict.fromkeys(out.suspect.values())},
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

    def _suspect_alarm(self, out: Outcome, summary: dict[str, Any]) -> None:
        ranges = summary["suspect_empty"]
        shown = ", ".join(ranges[:10]) + (f" (+{len(ranges) - 10} more ranges)" if len(ranges) > 10 else "")
        first = out.suspect[min(out.suspect)]
        if self.cfg.strict:
            raise DataError(
                f"{len(out.suspect)} hours of {self.symbol} came back empty inside market hours with ticks on both "
                f"sides: {shown} (first: {first}). They look like holes in the feed, not a quiet market, so they "
                "were not cached as empty and their days were not catalogued. Re-run later to ask again"
                + ("" if self.cfg.failover == "json_api" else ", set data.failover=json_api to ask the JSON API too")
                + ", or set data.strict=false to continue with the gap (listed in data_quality.json)."
            )
        log.warning("dukascopy hours empty inside market hours (suspect_empty): kept out of the catalog, "
                    "asked again next run", symbol=self.symbol, hours=len(out.suspect), ranges=ranges[:10],
                    first_reason=first, fix="re-run later; data.failover=json_api; data.strict=true makes this an error")

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
