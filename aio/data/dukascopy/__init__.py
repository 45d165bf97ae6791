"""Dukascopy data source: fast, resumable, fault-tolerant tick downloads with a local catalog.

``data=dukascopy`` registers :class:`DukascopySource` with :class:`DukascopyConfig`.
Modules: ``bi5`` (formats), ``jsonapi`` (failover feed), ``fetch`` (HTTP, retries,
breaker), ``cache`` (raw files), ``catalog`` (Parquet days), ``quality``
(market hours, gaps, spreads), ``instruments`` (price points), ``mirror`` (a
loopback mirror of the feed), ``source`` (the plugin).
"""

from __future__ import annotations

from aio.data.dukascopy.config import DukascopyConfig
from aio.data.dukascopy.source import DukascopySource

__all__ = ["DukascopyConfig", "DukascopySource", "register"]


def register(registry) -> None:
    registry.add("data", "dukascopy", DukascopySource, config=DukascopyConfig,
                 description="Dukascopy ticks: bi5 datafeed, raw cache, Hive Parquet catalog")
