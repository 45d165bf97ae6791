"""The ``file`` data plugin: bars or ticks from a CSV or Parquet file.

Columns are found by common names (time/timestamp/date, open/high/low/close,
volume, bid/ask, spread...) or mapped explicitly with ``columns: {time: Date,
open: O, ...}``. The kind (bars or ticks) follows from the columns unless
``kind`` says it. Times may be ISO strings (an offset in the string is honoured;
naive ones are read in ``timezone``, e.g. US/Eastern), unix seconds/ms/us/ns
(detected by magnitude) or native datetime columns. Naive times need ``timezone``
(there is no safe default: a broker's server clock, New York or UTC are all common),
and a file may not mix naive times with times that carry an offset.

Bars get ``ts_event`` = the open time in the file and ``ts_init`` = open +
timeframe (``timeframe`` or the modal spacing). Rows that cannot be used
(unparseable time, missing/negative prices, high < low, a second bar at the same
time) are excluded, counted by reason and listed with their row numbers in
``MarketData.quality["bad_rows"]``, with a warning: never silently dropped. More
than ``max_bad_rows_pct`` percent of bad rows, or none left, is an error that shows
the reasons. The CSV separator is sniffed from the first lines unless ``separator``
names it. Without a spread column, ``spread_pips`` states an assumed constant spread
(recorded in the quality report and meta); otherwise the spread stays unknown (NaN).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import polars as pl
import structlog

from aio.bars import format_timeframe, parse_timeframe
from aio.config import param
from aio.data.base import utc_range_ns
from aio.errors import ConfigError, DataError
from aio.quality import check_ticks, iso, modal_step
from aio.records import MarketData, pip_size

log = structlog.get_logger(__name__)

# canonical name -> names recognised automatically (compared lower-case, without spaces, _ and -)
ALIASES: dict[str, tuple[str, ...]] = {
    "time": ("time", "timestamp", "datetime", "date", "ts", "tsevent", "gmttime", "localtime", "utc", "opentime", "dt"),
    "open": ("open", "o", "openprice"),
    "high": ("high", "h", "highprice"),
    "low": ("low", "l", "lowprice"),
    "close": ("close", "c", "closeprice"),
    "volume": ("volume", "vol", "v", "tickvolume", "tickvol", "realvolume"),
    "ticks": ("ticks", "tickcount", "count", "numticks"),
    "spread": ("spread", "spreadmean", "avgspread"),
    "bid": ("bid", "bidprice"),
    "ask": ("ask", "askprice", "offer"),
    "price": ("price", "last", "mid"),
    "bid_volume": ("bidvolume", "bidvol", "bidsize"),
    "ask_volume": ("askvolume", "askvol", "asksize"),
}
OHLC = ("open", "high", "low", "close")
MAX_EXAMPLES = 20
SEPARATORS = (",", ";", "\t", "|")
ZONE_CHOICES = ("UTC", "EET (MetaTrader servers, GMT+2/+3)", "US/Eastern (New York, TradingView/NinjaTrader)",
                "Europe/London")
_JOINED = "__date_time"
_OFFSET = r"(?:[zZ]|[+-]\d{2}:?\d{2})$"


@dataclass
class FileDataConfig:
    """Bars or ticks from a CSV or Parquet file, with column mapping and time zones."""

    # The section names its plugin (conf/<group>/file.yaml says name: file); a plugin-shipped
    # node without a YAML is offered to Hydra as is, so the name belongs to the schema.
    name: str = param("file", choices=["file"], help="the plugin")

    path: Optional[str] = param(None, help="CSV or Parquet file of bars or ticks")
    symbol: str = param("EURUSD", help="instrument label; decides the pip (JPY quotes: 0.01)")
    kind: str = param("auto", choices=["auto", "bars", "ticks"], help="auto: bars if open/high/low/close exist, else ticks")
    format: str = param("auto", choices=["auto", "csv", "parquet"], help="auto: by the file suffix")
    columns: dict[str, str] = param(
        default_factory=dict,
        help="canonical -> file column, e.g. {time: Date, open: O}; canonical: " + ", ".join(ALIASES),
    )
    timezone: Optional[str] = param(
        None, help="zone of naive timestamps (UTC, EET, US/Eastern...); required when the file's times have no offset"
    )
    time_format: Optional[str] = param(None, help="strftime format of the time column (null: ISO 8601 / unix / auto)")
    time_unit: str = param("auto", choices=["auto", "s", "ms", "us", "ns"], help="unit of numeric times (auto: by magnitude)")
    timeframe: Optional[str] = param(None, help="bar length (1h...); null = the modal spacing of the file's times")
    side: str = param("mid", choices=["bid", "ask", "mid"], help="which quote the file's bar prices are")
    spread_unit: str = param("price", choices=["price", "points", "pips"], help="unit of a spread column")
    start: Optional[str] = param(None, help="keep rows from this UTC date/datetime (inclusive); null = all")
    end: Optional[str] = param(None, help="keep rows before this UTC date/datetime (exclusive); null = all")
    separator: Optional[str] = param(None, help="CSV field separator; null = sniffed from the first lines (, ; tab |)")
    has_header: bool = param(True, help="CSV has a header row (without one, map column_1, column_2...)")
    max_bad_rows_pct: float = param(1.0, ge=0, le=100, help="more bad rows than this percentage of the file is an error")
    spread_pips: Optional[float] = param(
        None, ge=0, help="assumed constant spread (pips) when the file has no spread; null = spread unknown"
    )

    def __post_init__(self) -> None:
        unknown = [k for k in self.columns if k not in ALIASES]
        if unknown:
            raise ConfigError(
                f"config key data.columns.{unknown[0]} is not a known column role; roles are: {', '.join(ALIASES)}"
            )
        if self.timezone is not None:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(
                    f"config key data.timezone={self.timezone!r} is not an IANA time zone (e.g. UTC, EET, US/Eastern, "
                    "Europe/London)"
                ) from None
        if self.separator is not None and len(self.separator) != 1:
            raise ConfigError(
                f"config key data.separator={self.separator!r} must be one character (',' ';' '|' or a tab), "
                "or null to sniff it"
            )
        if self.timeframe is not None:
            try:
                parse_timeframe(self.timeframe)
            except ValueError as exc:
                raise ConfigError(f"config key data.timeframe={self.timeframe!r} is not allowed: {exc}") from None
        if self.start is not None or self.end is not None:
            utc_range_ns(self.start or "1970-01-01", self.end or "2262-01-01")


# -- reading -------------------------------------------------------------------------


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-<>]", "", name.strip().lower())


def sniff_separator(path: Path) -> str | None:
    """The separator that splits the first lines into one same number (> 1) of fields.

    None when no candidate is consistent (a ragged or one-column file): the caller then
    reads with ',' and a wrong guess shows as one column, which the errors point at.
    """
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    lines = [ln for ln in head.decode("utf-8", errors="replace").splitlines() if ln.strip()]
    if len(head) == 1 << 16 and len(lines) > 1:
        lines = lines[:-1]  # probably cut in the middle
    lines = lines[:50]
    best, best_fields = None, 1
    for sep in SEPARATORS:
        counts = {ln.count(sep) for ln in lines}
        if len(counts) == 1:
            fields = counts.pop() + 1
            if fields > best_fields:
                best, best_fields = sep, fields
    return best


def read_table(path: Path, fmt: str, separator: str | None = ",", has_header: bool = True) -> pl.DataFrame:
    """The raw table; CSV values stay strings so a bad value marks one row, not the column.

    ``separator`` None sniffs it (see :func:`sniff_separator`).
    """
    if fmt == "auto":
        fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    try:
        if fmt == "parquet":
            return pl.read_parquet(path)
        sep = separator or sniff_separator(path) or ","
        return pl.read_csv(path, infer_schema=False, separator=sep, has_header=has_header,
                           truncate_ragged_lines=True)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read {path} as {fmt}: {exc}") from exc


def _separator_hint(path: Path, found: list[str], separator: str | None) -> str:
    """Why a CSV came out as one column, and the key that fixes it."""
    if len(found) != 1 or path.suffix.lower() in (".parquet", ".pq"):
        return ""
    header = found[0]
    seen = [s for s in SEPARATORS if s in header]
    used = repr(separator) if separator else "sniffed (none of , ; tab | splits every line the same way)"
    guess = f"; its header contains {seen[0]!r}: set data.separator={seen[0]!r}" if seen else ""
    return (f" The file was read as one column (separator {used}){guess}"
            f"{'' if seen else ': set data.separator to the character between its fields'}.")


def resolve_columns(found: list[str], mapping: dict[str, str]) -> dict[str, str]:
    """canonical -> actual column, explicit mapping first, then by alias."""
    out: dict[str, str] = {}
    for role, col in mapping.items():
        if col not in found:
            raise KeyError(role, col)
        out[role] = col
    by_norm = {}
    for c in found:
        by_norm.setdefault(_norm(c), c)
    taken = set(out.values())
    for role, names in ALIASES.items():
        if role in out:
            continue
        for n in names:
            c = by_norm.get(n)
            if c is not None and c not in taken:
                out[role] = c
                taken.add(c)
                break
    return out


def _expected_text() -> str:
    return (
        "a time column plus open/high/low/close (bars) or bid/ask or price (ticks); "
        "map them with data.columns (command line: +data.columns.time=Date +data.columns.open=O ...)"
    )


# -- times ---------------------------------------------------------------------------


@dataclass
class ParsedTimes:
    ns: np.ndarray  # int64 ns UTC, undefined where ~ok
    ok: np.ndarray  # parsed
    local_fail: np.ndarray  # parsed as a wall time that does not exist / is ambiguous in the zone
    how: str = ""
    naive: np.ndarray | None = None  # rows given as wall times without an offset (need a zone)
    aware: np.ndarray | None = None  # rows with an offset, or unix times (UTC by definition)


def _unit_scale(values: np.ndarray, unit: str) -> tuple[str, int]:
    if unit == "auto":
        finite = np.abs(values[np.isfinite(values)])
        med = float(np.median(finite)) if finite.size else 0.0
        unit = "s" if med < 1e11 else "ms" if med < 1e14 else "us" if med < 1e17 else "ns"
    return unit, {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}[unit]


def _numeric_times(s: pl.Series, unit: str) -> ParsedTimes:
    if s.dtype.is_integer():
        ints = s.cast(pl.Int64)
        ok = ints.is_not_null().to_numpy()
        v = ints.fill_null(0).to_numpy()
        unit, scale = _unit_scale(v[ok].astype(np.float64), unit)
        return ParsedTimes(v * scale, ok, np.zeros(ok.shape, bool), f"unix {unit}", np.zeros(ok.shape, bool), ok)
    f = s.cast(pl.Float64, strict=False).to_numpy().astype(np.float64)
    ok = np.isfinite(f)
    unit, scale = _unit_scale(f, unit)
    ns = np.zeros(f.shape, dtype=np.int64)
    if scale >= 1_000:  # keep microsecond precision of fractional seconds exact enough
        ns[ok] = np.rint(f[ok] * (scale // 1_000)).astype(np.int64) * 1_000
    else:
        ns[ok] = np.rint(f[ok]).astype(np.int64)
    return ParsedTimes(ns, ok, np.zeros(ok.shape, bool), f"unix {unit}", np.zeros(ok.shape, bool), ok)


def _index_ns(idx: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """int64 ns UTC and validity of an aware/naive index of any unit (NaT and years
    outside 1678-2261, which int64 ns cannot hold, are invalid)."""
    vals = idx.asi8
    factor = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}[idx.unit]
    ok = ~np.asarray(pd.isna(idx)) & (np.abs(vals) < np.iinfo(np.int64).max // factor)
    return np.where(ok, vals * factor, 0), ok


def _localize(naive: pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    """Wall times in ``tz`` -> UTC; a DST-repeated hour is resolved by order when possible."""
    zone = ZoneInfo(tz)
    try:
        return naive.tz_localize(zone, ambiguous="infer", nonexistent="NaT")
    except Exception:  # order cannot resolve it (e.g. unsorted rows): mark those rows instead
        return naive.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")


def _string_times(s: pl.Series, tz: str, fmt: str | None) -> ParsedTimes:
    text = s.cast(pl.String).str.strip_chars()
    n = text.len()
    ns = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    local_fail = np.zeros(n, dtype=bool)
    naive_rows = np.zeros(n, dtype=bool)
    present = text.is_not_null() & (text != "")
    has_off = (present & text.str.contains(_OFFSET)).to_numpy()
    naive = (present.to_numpy()) & ~has_off
    values = pd.Series(text.to_numpy(), dtype=object)
    how = []
    kw = {"format": fmt} if fmt else {"format": "ISO8601"}
    if has_off.any():
        t = pd.to_datetime(values[has_off], utc=True, errors="coerce", **kw)
        ns[has_off], ok[has_off] = _index_ns(pd.DatetimeIndex(t))
        how.append("ISO with offset")
    if naive.any():
        raw = values[naive]
        t = pd.to_datetime(raw, errors="coerce", **kw)
        bad = pd.isna(t).to_numpy()
        if not fmt and bad.mean() > 0.5:
            # not ISO 8601: let pandas guess the format per value (slower, still vectorised in C for most)
            t = pd.to_datetime(raw, errors="coerce", format="mixed")
            bad = pd.isna(t).to_numpy()
        idx = pd.DatetimeIndex(t)
        if idx.tz is None:
            idx = _localize(idx, tz)
            lf = np.asarray(pd.isna(idx)) & ~bad
            naive_rows[np.flatnonzero(naive)[~bad]] = True
        else:  # a format with %z: already aware
            idx = idx.tz_convert("UTC")
            lf = np.zeros(bad.shape, bool)
        ns[naive], ok[naive] = _index_ns(idx)
        sub = np.flatnonzero(naive)
        local_fail[sub[lf]] = True
        how.append(f"naive in {tz}")
    aware = ok & ~naive_rows
    return ParsedTimes(ns, ok, local_fail, ", ".join(how), naive_rows, aware)


def parse_times(s: pl.Series, *, tz: str | None, fmt: str | None = None, unit: str = "auto") -> ParsedTimes:
    """Any time column -> int64 ns UTC with a per-row ok mask (naive times read in ``tz``,
    UTC when None: the caller refuses naive rows then, see ``ParsedTimes.naive``)."""
    tz = tz or "UTC"
    dt = s.dtype
    if isinstance(dt, pl.Datetime):
        present = s.is_not_null().to_numpy()
        naive = dt.time_zone is None
        if naive:
            s = s.dt.replace_time_zone(str(ZoneInfo(tz)), ambiguous="null", non_existent="null")
            lf = s.is_null().to_numpy()
        else:
            lf = np.zeros(s.len(), bool)
        v = s.dt.convert_time_zone("UTC").dt.cast_time_unit("ns").dt.replace_time_zone(None).cast(pl.Int64)
        ok = v.is_not_null().to_numpy()
        lf = lf & ~ok & present
        none = np.zeros(ok.shape, bool)
        return ParsedTimes(v.fill_null(0).to_numpy(), ok, lf, "datetime column",
                           present if naive else none, ok if not naive else none)
    if dt == pl.Date:
        return parse_times(s.cast(pl.Datetime("ns")), tz=tz, fmt=fmt, unit=unit)
    if dt.is_numeric():
        return _numeric_times(s, unit)
    # strings: numbers written as text are unix times
    if fmt is None:
        text = s.cast(pl.String).str.strip_chars()
        num = text.cast(pl.Float64, strict=False)
        present = int((text.is_not_null() & (text != "")).sum())
        # mostly numbers: unix times (the odd non-number is a bad row, not a new format)
        if present and num.is_not_null().sum() > 0.5 * present:
            return _numeric_times(num, unit)
    return _string_times(s, tz, fmt)


# -- the source ----------------------------------------------------------------------


@dataclass
class _Rows:
    """Per-row exclusion reasons, first reason wins."""

    n: int
    reason: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.reason = np.full(self.n, "", dtype=object)

    def mark(self, mask: np.ndarray, why: str) -> None:
        m = mask & (self.reason == "")
        self.reason[m] = why

    @property
    def bad(self) -> np.ndarray:
        return self.reason != ""


class FileSource:
    """Bars or ticks from a CSV or Parquet file."""

    def __init__(self, cfg: FileDataConfig):
        self.cfg = cfg

    def load(self) -> MarketData:
        cfg = self.cfg
        if not cfg.path:
            raise ConfigError("config key data.path is required for data=file: set data.path=/path/to/bars.csv")
        path = Path(cfg.path).expanduser()
        if not path.is_file():
            raise DataError(
                f"data file {path} does not exist (data.path={cfg.path!r}); it should hold {_expected_text()}"
            )
        if path.stat().st_size == 0:
            raise DataError(f"data file {path}: no valid rows: the file is empty (0 bytes); it should hold {_expected_text()}")
        raw = read_table(path, cfg.format, cfg.separator, cfg.has_header)
        raw = raw.rename({c: c.strip() for c in raw.columns if c != c.strip()})
        found = raw.columns
        try:
            cols = resolve_columns(found, cfg.columns)
        except KeyError as exc:
            role, col = exc.args
            raise DataError(
                f"data file {path}: data.columns.{role}={col!r} is not a column of the file; "
                f"columns found: {found}; expected {_expected_text()}.{_separator_hint(path, found, cfg.separator)}"
            ) from None
        cols = self._join_date_time(raw, cols)
        if cols.get("time") == _JOINED:
            raw = raw.with_columns(
                (pl.col(cols["_date"]).cast(pl.String) + " " + pl.col(cols["_time"]).cast(pl.String)).alias(_JOINED)
            )
        kind = cfg.kind
        has_bars = all(r in cols for r in OHLC)
        has_ticks = any(r in cols for r in ("bid", "ask", "price"))
        if kind == "auto":
            kind = "bars" if has_bars else "ticks" if has_ticks else ""
        if "time" not in cols or not kind or (kind == "bars" and not has_bars) or (kind == "ticks" and not has_ticks):
            need = "time" if "time" not in cols else ("open/high/low/close" if kind == "bars" else "bid/ask or price")
            raise DataError(
                f"data file {path} has no usable columns (missing {need}{'' if cfg.kind == 'auto' else f' for data.kind={cfg.kind}'}); "
                f"columns found: {found}; recognised: {cols or 'none'}; expected {_expected_text()}."
                f"{_separator_hint(path, found, cfg.separator)}"
            )
        md = self._bars(path, raw, cols) if kind == "bars" else self._ticks(path, raw, cols)
        return md

    def _join_date_time(self, raw: pl.DataFrame, cols: dict[str, str]) -> dict[str, str]:
        """Separate Date and Time columns (MetaTrader exports) become one time column."""
        if "time" in self.cfg.columns or "time" not in cols:
            return cols
        by_norm = {_norm(c): c for c in raw.columns}
        if cols["time"] == by_norm.get("time") and "date" in by_norm:
            return {**cols, "time": _JOINED, "_date": by_norm["date"], "_time": by_norm["time"]}
        return cols

    # -- shared steps -------------------------------------------------------------------
    def _where(self, path: Path, i: int) -> str:
        if path.suffix.lower() in (".parquet", ".pq") or self.cfg.format == "parquet":
            return f"row {i}"
        return f"line {i + (2 if self.cfg.has_header else 1)}"

    def _examples(self, path: Path, col: pl.Series, mask: np.ndarray, k: int = 3) -> str:
        idx = np.flatnonzero(mask)[:k]
        return ", ".join(f"{self._where(path, int(i))}: {str(col[int(i)])!r}" for i in idx)

    def _times(self, path: Path, raw: pl.DataFrame, cols: dict[str, str], rows: _Rows) -> tuple[np.ndarray, str]:
        cfg = self.cfg
        col = raw.get_column(cols["time"])
        t = parse_times(col, tz=cfg.timezone, fmt=cfg.time_format, unit=cfg.time_unit)
        naive = t.naive if t.naive is not None else np.zeros(col.len(), bool)
        aware = t.aware if t.aware is not None else np.zeros(col.len(), bool)
        if naive.any() and aware.any():
            raise DataError(
                f"data file {path} mixes times with a UTC offset ({int(aware.sum())} rows, e.g. "
                f"{self._examples(path, col, aware)}) and times without one ({int(naive.sum())} rows, e.g. "
                f"{self._examples(path, col, naive)}) in column {cols['time']!r}: one zone cannot be right for both. "
                "Fix the file so every time carries its offset (or none does, then set data.timezone)."
            )
        if naive.any() and cfg.timezone is None:
            raise ConfigError(
                f"data file {path} has times without a UTC offset (e.g. {self._examples(path, col, naive)}), so "
                "config key data.timezone must say which zone they are in; common choices: "
                + "; ".join(f"data.timezone={z}" for z in ZONE_CHOICES)
                + ". Any IANA zone works (Europe/Berlin, Asia/Tokyo...); daylight saving is applied."
            )
        rows.mark(t.local_fail, f"local time does not exist or is ambiguous in {cfg.timezone}")
        rows.mark(~t.ok, "unparseable time")
        return t.ns, t.how

    def _prices(self, raw: pl.DataFrame, cols: dict[str, str], roles: tuple[str, ...], rows: _Rows) -> dict[str, np.ndarray]:
        out = {}
        for r in roles:
            v = raw.get_column(cols[r])
            v = v.str.strip_chars() if v.dtype == pl.String else v
            out[r] = v.cast(pl.Float64, strict=False).to_numpy().astype(np.float64)
        for r in roles:
            rows.mark(~np.isfinite(out[r]), f"missing or non-numeric {r}")
        for r in roles:
            rows.mark(np.isfinite(out[r]) & (out[r] <= 0), f"non-positive {r}")
        return out

    def _optional(self, raw: pl.DataFrame, cols: dict[str, str], role: str) -> np.ndarray | None:
        if role not in cols:
            return None
        v = raw.get_column(cols[role])
        v = v.str.strip_chars() if v.dtype == pl.String else v
        return v.cast(pl.Float64, strict=False).to_numpy().astype(np.float64)

    def _report(self, path: Path, raw: pl.DataFrame, cols: dict[str, str], rows: _Rows) -> dict[str, Any]:
        bad = np.flatnonzero(rows.bad)
        reasons, counts = np.unique(rows.reason[bad], return_counts=True) if bad.size else ([], [])
        examples = []
        shown = list(dict.fromkeys(cols.values()))
        if bad.size:
            sample = raw.select(shown)[bad[:MAX_EXAMPLES]].to_dicts()
            csv = path.suffix.lower() not in (".parquet", ".pq") and self.cfg.format != "parquet"
            for i, vals in zip(bad[:MAX_EXAMPLES], sample):
                ex = {"row": int(i), "reason": rows.reason[i], "values": {k: (None if v is None else str(v)) for k, v in vals.items()}}
                if csv:
                    ex["line"] = int(i) + (2 if self.cfg.has_header else 1)
                examples.append(ex)
        report = {
            "count": int(bad.size),
            "by_reason": {str(r): int(c) for r, c in zip(reasons, counts)},
            "examples": examples,
            "row_numbering": "row = 0-based data row; line = line in the CSV file (header = line 1)",
        }
        if bad.size:
            log.warning(
                "bad rows excluded from data file",
                file=str(path), count=int(bad.size), by_reason=report["by_reason"],
                first_rows=[int(i) for i in bad[:5]],
            )
        return report

    def _spread_info(self, path: Path, in_file: bool) -> dict[str, Any]:
        """Where the spread comes from: the file, a stated assumption, or nowhere (with a note)."""
        if in_file:
            return {"source": "file"}
        if self.cfg.spread_pips is not None:
            note = (f"the file has no spread; assumed a constant {self.cfg.spread_pips:g} pips "
                    "(data.spread_pips) for spread features and costs")
            log.warning("spread assumed", file=str(path), spread_pips=self.cfg.spread_pips)
            return {"source": "assumed", "pips": float(self.cfg.spread_pips), "note": note}
        note = ("the file has no spread: spread features and spread costs are left out "
                "(set data.spread_pips=0.8, say, to assume a constant spread)")
        log.warning("data file has no spread; spread left out", file=str(path),
                    fix="data.spread_pips=<pips> assumes a constant spread")
        return {"source": "unknown", "note": note}

    def _reasons_table(self, path: Path, raw: pl.DataFrame, cols: dict[str, str], rows: _Rows) -> str:
        """Reasons, their counts and the first offending row with its values, one line each."""
        bad = rows.bad
        if not bad.any():
            return f"    reason  rows\n    (none: {raw.height} data rows read)"
        reasons, counts = np.unique(rows.reason[bad], return_counts=True)
        shown = [c for k, c in cols.items() if not k.startswith("_")]
        width = max(len("reason"), *(len(str(r)) for r in reasons))
        out = [f"    {'reason':<{width}}  {'rows':>7}  first of them"]
        for j in np.argsort(-counts, kind="stable"):
            i = int(np.flatnonzero(rows.reason == reasons[j])[0])
            vals = ", ".join(f"{c}={raw.get_column(c)[i]!r}" for c in dict.fromkeys(shown) if c in raw.columns)
            out.append(f"    {reasons[j]:<{width}}  {int(counts[j]):>7}  {self._where(path, i)}: {vals}")
        return "\n".join(out)

    def _check_rows(self, path: Path, raw: pl.DataFrame, cols: dict[str, str], rows: _Rows) -> None:
        """No valid rows, or more bad rows than data.max_bad_rows_pct: an error with the reasons."""
        n, nbad = raw.height, int(rows.bad.sum())
        if n == 0:
            raise DataError(
                f"data file {path}: no valid rows: it has a header ({raw.columns}) but no data rows.\n"
                f"{self._reasons_table(path, raw, cols, rows)}\n"
                "Point data.path at a file with bars or ticks below the header."
            )
        table = self._reasons_table(path, raw, cols, rows)
        if nbad == n:
            raise DataError(
                f"data file {path}: no valid rows: all {n} rows are bad:\n{table}\n"
                "Fix the rows, or tell aio how to read them: data.columns (which column is what), "
                "data.time_format (e.g. '%d.%m.%Y %H:%M'), data.timezone, data.separator."
            )
        pct = 100.0 * nbad / n
        if pct > self.cfg.max_bad_rows_pct:
            raise DataError(
                f"data file {path}: {nbad} of {n} rows ({pct:.1f}%) are bad, more than "
                f"data.max_bad_rows_pct={self.cfg.max_bad_rows_pct:g}:\n{table}\n"
                f"Fix those rows, or set data.max_bad_rows_pct={math.ceil(pct)} to run on the {n - nbad} good rows "
                "(every bad row is listed in data_quality.json)."
            )

    def _order_and_range(self, ts: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, int]:
        """Row order of kept rows sorted by time (stable) and how many were out of order."""
        idx = np.flatnonzero(keep)
        t = ts[idx]
        out_of_order = int((t[1:] < np.maximum.accumulate(t)[:-1]).sum()) if t.size > 1 else 0
        if out_of_order:
            idx = idx[np.argsort(t, kind="stable")]
        if self.cfg.start is not None or self.cfg.end is not None:
            s, e = utc_range_ns(self.cfg.start or "1970-01-01", self.cfg.end or "2262-01-01")
            t = ts[idx]
            idx = idx[(t >= s) & (t < e)]
        return idx, out_of_order

    def _market(self, path: Path, kind: str, frame: pl.DataFrame, meta: dict, quality: dict) -> MarketData:
        symbol = self.cfg.symbol.upper().replace("/", "")
        pip = pip_size(symbol)
        if frame.height == 0:
            raise DataError(
                f"data file {path}: no usable rows{' in data.start/data.end' if self.cfg.start or self.cfg.end else ''} "
                f"(bad rows: {quality['bad_rows']['count']}, e.g. {quality['bad_rows']['examples'][:3]})"
            )
        log.info("data file loaded", file=str(path), kind=kind, rows=frame.height,
                 bad_rows=quality["bad_rows"]["count"], first=iso(frame["ts_event"][0]))
        return MarketData(kind=kind, frame=frame, symbol=symbol, synthetic=False, point=pip / 10, pip=pip,
                          source=f"file:{path.name}", meta={"path": str(path), **meta}, quality=quality)

    # -- bars ---------------------------------------------------------------------------
    def _bars(self, path: Path, raw: pl.DataFrame, cols: dict[str, str]) -> MarketData:
        cfg = self.cfg
        rows = _Rows(raw.height)
        ts, how = self._times(path, raw, cols, rows)
        p = self._prices(raw, cols, OHLC, rows)
        o, h, l, c = p["open"], p["high"], p["low"], p["close"]
        rows.mark(h < l, "high below low")
        rows.mark((o > h) | (o < l) | (c > h) | (c < l), "open or close outside high-low")
        # a second bar at the same open time: the first one in file order wins
        cand = np.flatnonzero(~rows.bad)
        _, first = np.unique(ts[cand], return_index=True)
        dup = np.ones(cand.size, bool)
        dup[first] = False
        dmask = np.zeros(raw.height, bool)
        dmask[cand[dup]] = True
        rows.mark(dmask, "duplicate time")
        report = self._report(path, raw, cols, rows)
        self._check_rows(path, raw, cols, rows)
        idx, out_of_order = self._order_and_range(ts, ~rows.bad)

        ts_k = ts[idx]
        if cfg.timeframe is not None:
            tf = parse_timeframe(cfg.timeframe)
        else:
            tf = modal_step(ts_k) if ts_k.size > 1 else None
            if tf is None:
                raise DataError(f"data file {path}: cannot infer the bar timeframe from {ts_k.size} bar(s); set data.timeframe")
        vol = self._optional(raw, cols, "volume")
        if vol is None:
            log.warning("data file has no volume column; bar volume is NaN (volume indicators will be NaN)", file=str(path))
        ticks = self._optional(raw, cols, "ticks")
        spread = self._optional(raw, cols, "spread")
        pip = pip_size(cfg.symbol)
        if spread is not None:
            spread = spread * {"price": 1.0, "points": pip / 10, "pips": pip}[cfg.spread_unit]
        elif cfg.spread_pips is not None:
            spread = np.full(raw.height, cfg.spread_pips * pip)
        spread_info = self._spread_info(path, "spread" in cols)
        n = idx.size
        frame = pl.DataFrame(
            {
                "ts_event": ts_k,
                "ts_init": ts_k + tf,
                "open": o[idx],
                "high": h[idx],
                "low": l[idx],
                "close": c[idx],
                "volume": vol[idx] if vol is not None else np.full(n, np.nan),
                "ticks": np.nan_to_num(ticks[idx], nan=0.0).astype(np.int64) if ticks is not None else np.zeros(n, np.int64),
                "spread_mean": spread[idx] if spread is not None else np.full(n, np.nan),
            }
        )
        quality = {
            "source": "file",
            "path": str(path),
            "kind": "bars",
            "rows_read": raw.height,
            "rows_used": n,
            "bad_rows": report,
            "out_of_order_rows": out_of_order,
            "time_parsing": how,
            "timeframe": format_timeframe(tf),
            "timeframe_inferred": cfg.timeframe is None,
            "columns": cols,
            "spread": spread_info,
        }
        if out_of_order:
            log.warning("data file rows were not in time order; sorted", file=str(path), rows=out_of_order)
        meta = {"timeframe_ns": tf, "timeframe": format_timeframe(tf), "side": cfg.side, "columns": cols,
                "volume_known": vol is not None, "ticks_known": ticks is not None, "spread_known": "spread" in cols,
                "spread": spread_info}
        return self._market(path, "bars", frame, meta, quality)

    # -- ticks --------------------------------------------------------------------------
    def _ticks(self, path: Path, raw: pl.DataFrame, cols: dict[str, str]) -> MarketData:
        rows = _Rows(raw.height)
        ts, how = self._times(path, raw, cols, rows)
        roles = tuple(r for r in ("bid", "ask") if r in cols) or ("price",)
        p = self._prices(raw, cols, roles, rows)
        spread_known = "bid" in p and "ask" in p
        spread_info = self._spread_info(path, spread_known)
        if spread_known:
            bid, ask = p["bid"], p["ask"]
        elif self.cfg.spread_pips is not None:
            # one quote per tick, read as the mid: the assumed spread straddles it
            half = 0.5 * self.cfg.spread_pips * pip_size(self.cfg.symbol)
            one = p.get("bid", p.get("ask", p.get("price")))
            bid, ask = one - half, one + half
        else:
            one = p.get("bid", p.get("ask", p.get("price")))
            bid = ask = one
        report = self._report(path, raw, cols, rows)
        self._check_rows(path, raw, cols, rows)
        idx, out_of_order = self._order_and_range(ts, ~rows.bad)
        bv, av = self._optional(raw, cols, "bid_volume"), self._optional(raw, cols, "ask_volume")
        vol = self._optional(raw, cols, "volume")
        n = idx.size
        if bv is None and av is None and vol is not None:
            bv = av = vol / 2.0  # one volume column: split across the sides so mid bars sum to it
        nan = np.full(raw.height, np.nan)
        frame = pl.DataFrame(
            {
                "ts_event": ts[idx],
                "bid": bid[idx],
                "ask": ask[idx],
                "bid_volume": (bv if bv is not None else nan)[idx],
                "ask_volume": (av if av is not None else nan)[idx],
            }
        )
        quality = {
            "source": "file",
            "path": str(path),
            "kind": "ticks",
            "rows_read": raw.height,
            "rows_used": n,
            "bad_rows": report,
            "out_of_order_rows": out_of_order,
            "time_parsing": how,
            "columns": cols,
            "spread": spread_info,
        }
        if frame.height:
            quality["ticks"] = check_ticks(frame, pip=pip_size(self.cfg.symbol))
        meta = {"side": "mid", "columns": cols, "spread_known": spread_known or self.cfg.spread_pips is not None,
                "volume_known": bv is not None or av is not None, "spread": spread_info}
        return self._market(path, "ticks", frame, meta, quality)


def register(registry) -> None:
    registry.add("data", "file", FileSource, config=FileDataConfig,
                 description="bars or ticks from CSV/Parquet (column mapping, time zones, bad-row report)")
