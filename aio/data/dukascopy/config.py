"""Typed config of the ``dukascopy`` data plugin (``conf/data/dukascopy.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from aio.config import param
from aio.data.base import parse_utc
from aio.errors import ConfigError

DEFAULT_BASE_URL = "https://datafeed.dukascopy.com/datafeed"
DEFAULT_JSON_API_URL = "https://jetta.dukascopy.com/v1"
# The datafeed's oldest tick files (EURUSD) start in May 2003.
EARLIEST = datetime(2003, 5, 1, tzinfo=timezone.utc)


@dataclass
class DukascopyConfig:
    """Dukascopy tick data: download hourly bi5 files, cache them, decode to a Parquet catalog."""

    # The section names its plugin (conf/data/dukascopy.yaml says name: dukascopy).
    name: str = param("dukascopy", choices=["dukascopy"], help="plugin name (data=dukascopy)")
    symbol: str = param("EURUSD", help="instrument in datafeed spelling (EURUSD, USDJPY, XAUUSD, BTCUSD...)")
    start: str = param("2024-03-04", help="first UTC date or datetime, inclusive")
    end: str = param("2024-03-18", help="UTC date or datetime, exclusive")
    base_url: str = param(DEFAULT_BASE_URL, help="datafeed root; a mirror works the same way")
    cache_dir: Optional[str] = param(None, help="raw bi5 files exactly as received; null = per-user cache")
    catalog_dir: Optional[str] = param(None, help="decoded Hive-partitioned Parquet; null = per-user cache")
    offline: bool = param(False, help="never touch the network; errors name what is missing")
    concurrency: int = param(4, ge=1, le=32, help="parallel requests (be polite to the free feed)")
    retries: int = param(5, ge=0, le=20, help="retries per file on timeouts, connection errors, 5xx, 429")
    timeout_s: float = param(30.0, gt=0, le=600, help="per-request timeout (connect, read)")
    backoff_s: float = param(0.5, ge=0, le=60, help="first retry delay; doubles each retry, with jitter")
    backoff_max_s: float = param(30.0, ge=0, le=600, help="cap on one retry delay (Retry-After included)")
    breaker_failures: int = param(
        25, ge=1, le=100_000, help="consecutive failed requests after which the run stops asking the server"
    )
    failover: str = param("none", choices=["none", "json_api"], help="second source for hours the bi5 feed fails")
    json_api_url: str = param(DEFAULT_JSON_API_URL, help="root of the Dukascopy JSON API")
    progress: bool = param(True, help="progress bar over hours")
    strict: bool = param(
        False, help="fail on suspect_empty hours (empty inside market hours with ticks on both sides) instead of warning"
    )

    def __post_init__(self) -> None:
        start, end = self.start_dt, self.end_dt
        if end <= start:
            raise ConfigError(
                f"config key data.end={self.end!r} must be after data.start={self.start!r} (end is exclusive)"
            )
        if start < EARLIEST:
            raise ConfigError(f"config key data.start={self.start!r} is before the datafeed's history (2003-05)")
        for key in ("base_url", "json_api_url"):
            url = getattr(self, key)
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"config key data.{key}={url!r} must be an http:// or https:// URL")
        from aio.data.dukascopy.instruments import lookup

        lookup(self.symbol)  # an unknown symbol fails at config time, with close matches

    @property
    def start_dt(self) -> datetime:
        return parse_utc(self.start, "data.start")

    @property
    def end_dt(self) -> datetime:
        return parse_utc(self.end, "data.end")

    def dirs(self) -> tuple[Path, Path]:
        """(raw cache, Parquet catalog) folders; both default under the per-user cache."""
        from platformdirs import user_cache_dir

        root = Path(user_cache_dir("aio", appauthor=False)) / "dukascopy"
        cache = Path(self.cache_dir).expanduser() if self.cache_dir else root / "raw"
        catalog = Path(self.catalog_dir).expanduser() if self.catalog_dir else root / "catalog"
        return cache, catalog
