"""``task=populate``: fill the pattern and strategy libraries from history and from plants.

Work is cut into *units*, each written to the library with idempotent upserts on
deterministic keys, and a unit is marked done in ``<library>/populate_state.json``
(atomic replace) only after all its writes committed:

- **history windows** (``window_bars`` bars, every ``step_bars``) of the run's bars:
  every bar's window becomes a pattern row (embedding of the last ``embed_bars``
  closes, outcome over ``horizon_bars``: forward return, direction label, MFE/MAE),
  and, with ``discover: true``, discovery runs on the window (the same proposers and
  funnel as ``task=discover``, its own ledger) and every candidate is written to the
  strategy library with its gates and ``accepted`` flag;
- **plants**: seeded synthetic markets with a planted edge (``aio/data/plant.py``);
  their patterns are written under the symbol ``SYNTHETIC-<hash>`` (never mixed with a
  market's) and the event bars' patterns carry the planted rule as their regime
  (``plant: <direction> when <rule>``); the planted rule itself becomes a strategy row.

A killed run resumes where it stopped: done units are skipped, the unit in flight is
redone from scratch (its ledger is recreated, so trial counts are not doubled), and
its rows, re-written with the same keys, replace themselves: no duplicates.

Embedding: z-scored log returns of the window, averaged into ``embed_dim`` buckets and
L2-normalised (model id ``populate-returns-<hash of the settings>``): cheap, causal,
model-free; a pattern at bar t reads bars t-embed_bars+1..t, its outcome bars after t,
known at ``label_end_ts``.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from aio.config import build, param
from aio.errors import ConfigError

log = structlog.get_logger(__name__)

STATE_FILE = "populate_state.json"
FAULT_ENV = "AIO_POPULATE_FAULT"  # fault injection for tests: "<unit number>:<phase>" -> SIGKILL there


@dataclass
class PlantSource:
    """One synthetic market with a planted edge (``discover.populate.plants[i]``)."""

    plant: dict[str, Any] = field(default_factory=dict)  # data.plant mapping (aio/data/plant.py)
    seed: int = param(0, ge=0)
    start: str = "2024-03-04"
    end: str = "2024-03-09"


@dataclass
class PopulateConfig:
    """``discover.populate``."""

    history: bool = param(True, help="mine the run's bars window by window")
    window_bars: int = param(2880, ge=200, help="bars per walk-forward window")
    step_bars: int | None = param(None, ge=1, help="bars between window starts (null: window_bars)")
    discover: bool = param(True, help="run discovery on every history window (else patterns only)")
    proposers: list[str] = field(default_factory=lambda: ["grammar_search"])
    budget: int = param(60, ge=1, help="candidates each searching proposer proposes per window")
    embed_bars: int = param(64, ge=8, le=4096, help="bars of each pattern's window")
    embed_dim: int = param(32, ge=4, le=1024)
    horizon_bars: int = param(15, ge=1, help="outcome horizon of a pattern")
    flat_bp: float = param(0.5, ge=0, help="|forward return| below this many basis points is labelled flat")
    stride: int = param(1, ge=1, help="every stride-th bar is a pattern")
    plants: list[PlantSource] = field(default_factory=list)
    progress: bool = True


def populate_config(dc: Any) -> PopulateConfig:
    return build(PopulateConfig, dict(getattr(dc, "populate", None) or {}), "discover.populate")


# -- patterns -------------------------------------------------------------------------


def embed_id(cfg: PopulateConfig) -> str:
    from aio.store.ids import short_hash

    return "populate-returns-" + short_hash("returns-v1", cfg.embed_bars, cfg.embed_dim, n=8)


def embeddings(close: np.ndarray, ends: np.ndarray, bars: int, dim: int) -> np.ndarray:
    """(len(ends), dim) float32: z-scored log returns of the ``bars`` closes ending at each index,
    averaged into ``dim`` buckets, L2-normalised (reads only bars <= end)."""
    lr = np.diff(np.log(close), prepend=np.log(close[0]))
    win = np.lib.stride_tricks.sliding_window_view(lr, bars - 1)  # returns of bars-1 steps end at i+bars-2
    x = win[np.asarray(ends) - (bars - 2)]
    x = (x - x.mean(1, keepdims=True)) / np.maximum(x.std(1, keepdims=True), 1e-12)
    buckets = np.array_split(np.arange(bars - 1), dim)
    e = np.stack([x[:, b].mean(1) for b in buckets], axis=1)
    e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return e.astype(np.float32)


def pattern_rows(frame: Any, lo: int, hi: int, cfg: PopulateConfig, symbol: str, timeframe: str, run_id: str,
                 regime: np.ndarray | None = None) -> Any:
    """Arrow rows of the patterns ending at bars [lo, hi) that have a full window and outcome."""
    import pyarrow as pa

    close = frame.get_column("close").to_numpy().astype(np.float64)
    high = frame.get_column("high").to_numpy().astype(np.float64)
    low = frame.get_column("low").to_numpy().astype(np.float64)
    ts = frame.get_column("ts_init").to_numpy().astype(np.int64)
    h = cfg.horizon_bars
    first = max(lo, cfg.embed_bars - 1)
    last = min(hi, len(close) - h)
    ends = np.arange(first, max(first, last), dtype=np.int64)
    ends = ends[ends % cfg.stride == 0]  # on a fixed grid, whatever the window boundaries
    n = len(ends)
    emb = embeddings(close, ends, cfg.embed_bars, cfg.embed_dim) if n else np.zeros((0, cfg.embed_dim), np.float32)
    fwd = close[ends + h] / close[ends] - 1.0 if n else np.zeros(0)
    path = np.stack([np.arange(1, h + 1) + e for e in ends]) if n else np.zeros((0, h), np.int64)
    mfe = high[path].max(1) / close[ends] - 1.0 if n else np.zeros(0)
    mae = low[path].min(1) / close[ends] - 1.0 if n else np.zeros(0)
    band = cfg.flat_bp * 1e-4
    label = np.where(fwd > band, 1, np.where(fwd < -band, -1, 0)).astype(np.int8)
    reg = [None] * n if regime is None else [None if r is None else str(r) for r in regime[ends]]
    return pa.table({
        "model_id": pa.array([embed_id(cfg)] * n, pa.string()),
        "symbol": pa.array([symbol] * n, pa.string()),
        "timeframe": pa.array([timeframe] * n, pa.string()),
        "ts_init": pa.array(ts[ends], pa.int64()),
        "label_end_ts": pa.array(ts[ends + h] if n else np.zeros(0, np.int64), pa.int64()),
        "horizon_bars": pa.array(np.full(n, h, dtype=np.int32)),
        "regime": pa.array(reg, pa.string()),
        "fwd_return": pa.array(fwd, pa.float64()),
        "label": pa.array(label, pa.int8()),
        "mfe": pa.array(mfe, pa.float64()),
        "mae": pa.array(mae, pa.float64()),
        "run_id": pa.array([run_id] * n, pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), cfg.embed_dim),
    })


# -- units --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    key: str
    kind: str  # history | plant
    lo: int = 0
    hi: int = 0
    plant: int = -1


def plan_units(n_bars: int, cfg: PopulateConfig) -> list[Unit]:
    units = []
    if cfg.history:
        step = cfg.step_bars or cfg.window_bars
        lo = 0
        while lo + cfg.window_bars <= n_bars:
            units.append(Unit(f"history:{lo}-{lo + cfg.window_bars}", "history", lo, lo + cfg.window_bars))
            lo += step
        if not units:
            raise ConfigError(f"discover.populate.window_bars={cfg.window_bars} is longer than the {n_bars} bars of "
                              "the data; lower it or widen data.start/data.end")
    for i, _ in enumerate(cfg.plants):
        units.append(Unit(f"plant:{i}", "plant", plant=i))
    return units


class State:
    """Done units per populate config (keyed by a hash of what decides the rows)."""

    def __init__(self, folder: Path, config_key: str) -> None:
        self.path = Path(folder) / STATE_FILE
        self.key = config_key
        self.all: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.done: list[str] = list(self.all.get(config_key, {}).get("done", []))

    def mark(self, unit: str) -> None:
        self.done.append(unit)
        self.all[self.key] = {"done": self.done}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.all, indent=1))
        os.replace(tmp, self.path)  # atomic: a kill leaves the old or the new file


class Lock:
    """One populate per library at a time: an exclusive flock on ``<library>/populate.lock``
    (released by the OS when the holder dies, so a SIGKILLed run never blocks its resume)."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / "populate.lock"
        self.fh: Any = None

    def __enter__(self) -> "Lock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "another process"
            self.fh.close()
            raise ConfigError(f"another task=populate ({holder}) is filling the library at {self.path.parent}; "
                              "wait for it (a second one would redo its units) or use another store.path") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"pid {os.getpid()}")
        self.fh.flush()
        return self

    def __exit__(self, *exc: Any) -> None:
        import fcntl

        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def _fault(count: int, phase: str) -> None:
    want = os.environ.get(FAULT_ENV)
    if want and want == f"{count}:{phase}":
        log.warning("fault injection: SIGKILL", unit=count, phase=phase)
        os.kill(os.getpid(), signal.SIGKILL)


# -- discovery on one window ------------------------------------------------------------


def discover_window(frame: Any, dc: Any, pc: PopulateConfig, bt: Any, seed: int, symbol: str, timeframe: str,
                    ledger_dir: Path, lib: Any, lineage: dict[str, Any]) -> dict[str, Any]:
    import shutil

    from aio.discover.funnel import evaluator, make_windows, open_ledger, run_funnel
    from aio.discover.grammar import Grammar
    from aio.discover.library import write_candidates
    from aio.discover.proposers import ProposeContext
    from aio.discover.stage import proposer
    from aio.strategy.rules import price_env

    n = frame.height
    w = make_windows(n, dc.holdout_pct, dc.embargo_bars, dc.funnel.tune)
    disc = frame.slice(0, w.discovery_end)
    ev = evaluator(disc, bt, symbol, timeframe)
    arrays = {c: disc.get_column(c).to_numpy() for c in ("open", "high", "low", "close", "volume")}
    grammar = Grammar(dc.grammar, {k: v[: w.proposal_end] for k, v in arrays.items()})
    ctx = ProposeContext(grammar=grammar, evaluator=ev, proposal_end=w.proposal_end, discovery_end=w.discovery_end,
                         rng=np.random.default_rng(seed), min_trades=dc.funnel.screen_min_trades,
                         env=price_env(arrays), symbol=symbol, timeframe=timeframe)
    cands = []
    for name in pc.proposers:
        cands += proposer(name, dc.options.get(name)).propose(ctx, pc.budget if name != "library" else 0)
    if ledger_dir.exists():  # a unit redone after a kill starts a fresh ledger (no doubled trials)
        shutil.rmtree(ledger_dir)
    ledger = open_ledger(ledger_dir)
    from aio.discover.gates import GateInputError

    try:
        res = run_funnel(cands, frame=frame, bt=bt, cfg=dc.funnel, grammar_cfg=dc.grammar, windows=w, ledger=ledger,
                         seed=seed, symbol=symbol, timeframe=timeframe, progress=False)
    except GateInputError as exc:
        raise ConfigError(f"discover.populate.window_bars={n}: a window is too short for the funnel's gates ({exc}); "
                          "raise window_bars (or set discover.populate.discover=false for patterns only)") from None
    ts = frame.get_column("ts_event")
    from aio.discover.stage import _iso

    lin = {**lineage, "window": {"start": _iso(ts[0]), "end": _iso(ts[-1]), **w.as_dict()},
           "ledger": {k: v for k, v in dict(res.ledger).items() if k != "path"}}
    written = write_candidates(lib, res.candidates, lin)
    return {"candidates": len(res.candidates), "accepted": len(res.accepted), "strategies_written": len(written),
            "funnel": res.counts}


# -- the stage ----------------------------------------------------------------------------


def stage_populate(run: Any) -> None:
    from aio.discover.stage import discover_config
    from aio.discover.stage import _library
    from aio.pipeline import backtest_config
    from aio.store.ids import short_hash

    dc = discover_config(run.cfg)
    if dc.name == "none":
        raise ConfigError("task=populate needs discover=funnel (its grammar, proposers and gates judge each window)")
    pc = populate_config(dc)
    lib = _library(run)
    if lib is None:
        raise ConfigError("task=populate needs a store section (store=lancedb, store.path=...)")
    frame = run.bars.frame
    symbol, tf = str(run.bars.symbol), str(run.bars.timeframe)
    seed = dc.seed if dc.seed is not None else run.seed
    bt = backtest_config(run)
    units = plan_units(frame.height if pc.history else 0, pc)
    key = short_hash("populate-v1", asdict(pc), asdict(dc.grammar), asdict(dc.funnel), dc.holdout_pct,
                     dc.embargo_bars, seed, symbol, tf, int(frame.get_column("ts_init")[0]) if frame.height else 0,
                     frame.height, n=16)
    with Lock(Path(lib.path)):
        _populate(run, lib, dc, pc, frame, units, key, symbol, tf, seed, bt)


def _populate(run: Any, lib: Any, dc: Any, pc: PopulateConfig, frame: Any, units: list[Unit], key: str, symbol: str,
              tf: str, seed: int, bt: Any) -> None:
    from aio import progress

    meta = run.market.meta if run.market is not None else {}
    state = State(Path(lib.path), key)
    folder = Path(lib.path).parent / f"populate_{key}"
    todo = [u for u in units if u.key not in state.done]
    summary: dict[str, Any] = {"units": len(units), "skipped_done": len(units) - len(todo), "patterns_written": 0,
                               "strategies_written": 0, "accepted": 0, "plants": [], "state": str(state.path),
                               "config_key": key}
    log.info("populate", units=len(units), done=len(units) - len(todo), library=str(lib.path))
    count = 0
    with progress.task("populate", total=len(units), unit="window", initial=len(units) - len(todo),
                       disable=None if pc.progress else True) as bar:
        for u in todo:
            if u.kind == "history":
                sub = frame.slice(u.lo, u.hi - u.lo)
                w = lib.add_patterns(pattern_rows(frame, u.lo, u.hi, pc, symbol, tf, f"populate:{u.key}"))
                summary["patterns_written"] += w.rows_in
                _fault(count, "patterns")
                if pc.discover:
                    lineage = {"teacher_model_id": None, "symbol": symbol, "timeframe": tf,
                               "data_source": getattr(run.market, "source", None), "synthetic": bool(run.synthetic),
                               "plant": (meta or {}).get("plant"), "run_dir": None,
                               "populate": {"unit": u.key, "config_key": key}}
                    r = discover_window(sub, dc, pc, bt, seed, symbol, tf, folder / u.key.replace(":", "_"), lib,
                                        lineage)
                    summary["strategies_written"] += r["strategies_written"]
                    summary["accepted"] += r["accepted"]
            else:
                r = plant_unit(pc.plants[u.plant], pc, lib, tf, u.key)
                summary["patterns_written"] += r["patterns_written"]
                summary["strategies_written"] += 1
                summary["plants"].append(r)
                _fault(count, "patterns")
            _fault(count, "written")
            state.mark(u.key)
            count += 1
            bar.advance()
    summary["rows"] = {"patterns": lib.count_patterns(), "strategies": lib.strategies().height}
    run.metrics["populate"] = summary
    log.info("populate done", **{k: v for k, v in summary.items() if k in ("units", "skipped_done", "patterns_written",
                                                                          "strategies_written", "accepted")})


def plant_unit(src: PlantSource | dict, pc: PopulateConfig, lib: Any, timeframe: str, unit: str) -> dict[str, Any]:
    """Patterns of one planted synthetic market, events labelled with the rule, and the rule as a strategy."""
    from aio.bars import TimeBars, TimeBarsConfig
    from aio.data.plant import PlantConfig, compile_plant, describe, event_mask
    from aio.data.synthetic import SyntheticDataConfig, SyntheticSource
    from aio.store.ids import short_hash
    from aio.store.records import StrategyRecord

    src = src if isinstance(src, PlantSource) else build(PlantSource, src, "discover.populate.plants[]")
    import yaml

    from aio.appconfig import REPO

    sec = yaml.safe_load((REPO / "conf" / "data" / "synthetic.yaml").read_text())
    sec.update(seed=src.seed, start=src.start, end=src.end, plant=src.plant)
    dcfg = build(SyntheticDataConfig, sec, "discover.populate.plants[]")
    market = SyntheticSource(dcfg).load()
    bars = TimeBars(TimeBarsConfig(timeframe=timeframe)).build(market) if timeframe else TimeBars(TimeBarsConfig()).build(market)
    frame = bars.frame
    pmeta = market.meta["plant"]
    plant: PlantConfig = dcfg.plant
    tag = short_hash(src.plant, src.seed, src.start, src.end, n=8)
    symbol = f"SYNTHETIC-{tag}"
    rule = f"plant: {plant.direction} when {plant.when}"
    ev = event_mask(pmeta, frame.get_column("ts_init").to_numpy())
    regime = np.where(ev, rule, "synthetic").astype(object)
    w = lib.add_patterns(pattern_rows(frame, 0, frame.height, pc, symbol, str(bars.timeframe), f"populate:{unit}", regime))
    spec = compile_plant(plant)
    definition = {"name": f"plant_{tag}", "indicators": plant.indicators,
                  "rules": [{"id": "plant", "when": plant.when, "direction": plant.direction}],
                  "exit": {}}
    lib.add_strategy(StrategyRecord(
        name=f"plant_{tag}", definition=definition, params=dict(spec.params), kind="rules", symbol=symbol,
        timeframe=str(bars.timeframe), model_id=None,
        metrics={"populate": {"source": "plant", "synthetic": True, "description": describe(plant),
                              "events": int(ev.sum()), "plant": {k: v for k, v in pmeta.items() if k != "event_ts_init"},
                              "data": {"seed": src.seed, "start": src.start, "end": src.end}}}))
    return {"unit": unit, "symbol": symbol, "rule": rule, "events": int(ev.sum()), "patterns_written": w.rows_in}
