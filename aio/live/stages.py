"""Pipeline stages of the live tasks: paper (engine + journal), publish, control."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import structlog

from aio.errors import ConfigError

log = structlog.get_logger(__name__)


def live_config(cfg: Any):
    from aio.appconfig import section
    from aio.config import build
    from aio.live.config import LiveConfig

    return build(LiveConfig, section(cfg, "live"), "live")


def _identity_hash(cfg: Any) -> str:
    """What makes a paper run *the same run*: data, bars, strategy, backtest, sizer (not speed or urls)."""
    from aio.appconfig import section

    keys = {k: section(cfg, k) for k in ("data", "bars", "strategy", "backtest", "sizer")}
    keys["source"] = section(cfg, "live").get("source")
    keys["stream"] = section(cfg, "live").get("stream")
    keys["window"] = section(cfg, "live").get("window")
    return hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_engine(run: Any, lcfg: Any, symbol: str | None = None):
    from aio.appconfig import plugin_config, section
    from aio.bars import parse_timeframe
    from aio.live.engine import LiveEngine, Strategy, check_journal_matches
    from aio.live.journal import Journal
    from aio.backtest.evaluator import backtest_config
    from aio.strategy import load_spec

    strat_section = section(run.cfg, "strategy")
    spec = load_spec(strat_section)
    if spec.uses_model():
        raise ConfigError(f"strategy {spec.name} reads model.* outputs {spec.uses_model()}; the paper engine runs "
                          "rule strategies without a model (serve the model with task=serve)")
    sizer = section(run.cfg, "sizer") or None
    if sizer and sizer.get("name") in (None, "none"):
        sizer = None
    strat = Strategy(strat_section, spec, dict(spec.params), sizer)
    _, bars_cfg = plugin_config("bars", run.cfg)
    tf = None if bars_cfg.timeframe == "auto" else parse_timeframe(bars_cfg.timeframe)
    if tf is None:
        tf = parse_timeframe("1m")  # ticks -> 1m bars, as aio.bars does for timeframe=auto
    journal = Journal(run.run_dir / lcfg.journal)
    ident = _identity_hash(run.cfg)
    check_journal_matches(journal, spec.name, ident)
    journal.set_meta({"config_hash": ident, "strategy": spec.name})
    import dataclasses

    bt = backtest_config(run)
    if symbol:
        bt = dataclasses.replace(bt, symbol=symbol)
    engine = LiveEngine(strat, bt, journal, window=lcfg.window, incremental=lcfg.incremental,
                        audit_every=lcfg.audit_every, timeframe_ns=tf,
                        side=bars_cfg.side, anchor=bars_cfg.anchor)
    return engine


def stage_paper(run: Any) -> None:
    from aio.backtest import write_equity_parquet, write_trades_csv
    from aio.backtest.metrics import compute_metrics
    from aio.registry import registry
    from aio.records import Bars, MarketData

    from aio.backtest import invariants

    lcfg = live_config(run.cfg)
    source = registry.get("live_source", lcfg.source)(lcfg, run)
    engine = build_engine(run, lcfg, getattr(source, "symbol", None))
    control = None
    if lcfg.control:
        from aio.live.control import Controller

        control = Controller(lcfg, engine.journal)
    try:
        stats = engine.run(source, control, clock_close_ms=lcfg.close_after_ms if lcfg.source != "replay" else 0)
    finally:
        source.close()
    synthetic = bool(getattr(source, "synthetic", False))
    frame = engine.hist.frame()
    from aio.bars import format_timeframe

    tf_name = format_timeframe(engine.tf) if getattr(source, "kind", "ticks") == "ticks" else _tf_of(frame)
    meta = {"source": f"live:{lcfg.source}"}
    if synthetic:
        meta["synthetic"] = getattr(getattr(source, "market", None), "meta", {}).get("synthetic", True)
    run.market = MarketData(kind="bars", frame=frame, symbol=getattr(source, "symbol", "") or "", synthetic=synthetic,
                            source=f"live:{lcfg.source}", meta=meta)
    run.bars = Bars(frame=frame, symbol=run.market.symbol, timeframe=tf_name, side=engine.side, synthetic=synthetic,
                    meta=meta)
    run.strategy = engine.strat.spec
    run.params = dict(engine.strat.params)
    result = engine.result()
    lat = np.asarray(stats.latencies_ns, dtype=np.float64) / 1e6
    run.metrics["live"] = {
        "source": lcfg.source, "bars": stats.bars, "recovered_bars": stats.recovered_bars, "records": stats.records,
        "seconds": round(stats.seconds, 3), "journal": str(engine.journal.path),
        "latency_ms_p50": float(np.percentile(lat, 50)) if lat.size else None,
        "latency_ms_p99": float(np.percentile(lat, 99)) if lat.size else None,
        "paused": engine.paused,
    }
    if result is None:
        log.warning("no bars closed: nothing to report")
        return
    invariants.check(result)  # the books balance, as every batch evaluation checks
    run.backtest = result
    write_trades_csv(result, run.artifact("trades.csv"), synthetic=synthetic)
    write_equity_parquet(result, frame, run.artifact("equity.parquet"), synthetic=synthetic)
    run.metrics["backtest"] = compute_metrics(result)
    from aio.report.headline import headline

    run.metrics["headline"] = {**headline(run), "sample": "paper",
                               "label": f"paper run on the {lcfg.source} stream, fixed parameters, costs included"}
    engine.journal.close()
    log.info("paper run done", bars=stats.bars, resumed=stats.recovered_bars, trades=result.n_trades,
             net_profit=run.metrics["backtest"].get("net_profit"))


def _tf_of(frame) -> str:
    from aio.bars import bar_timeframe_ns, format_timeframe

    tf = bar_timeframe_ns(frame)
    return format_timeframe(tf) if tf else "unknown"


def stage_publish(run: Any) -> None:
    from aio.live.publish import stage_publish as impl

    impl(run)


def stage_control(run: Any) -> None:
    from aio.live.control import stage_control as impl

    impl(run)


def register(registry) -> None:
    from aio.live.sources import register as reg_sources

    reg_sources(registry)
