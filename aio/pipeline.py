"""The run: stages over artifacts, driven by the composed config.

Each stage reads what earlier stages put on the :class:`Run` and adds its own
artifacts; ``task`` picks how far the run goes. Every run writes its resolved
config, a manifest (git commit, config hash, data provenance, hardware), metrics
and artifacts into the Hydra run folder, and prints ``run_dir: <path>`` last.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import structlog
from omegaconf import DictConfig, OmegaConf

from aio.appconfig import REPO, plugin_config, plugin_section, run_section, section
from aio.errors import ConfigError

log = structlog.get_logger(__name__)


@dataclass
class Run:
    cfg: DictConfig
    run_dir: Path
    task: str = "run"
    seed: int = 42
    market: Any = None  # aio.records.MarketData
    bars: Any = None  # aio.records.Bars
    features: dict[str, np.ndarray] = field(default_factory=dict)
    strategy: Any = None  # aio.strategy.StrategySpec
    params: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # model.* series for rules/sizers
    dataset: Any = None  # aio.dataset.DatasetInfo
    model: Any = None  # aio.models.base.ModelResult
    backtest: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    objective: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    conversion: Any = None  # aio.instruments.ConversionPlan
    conversion_market: Any = None  # the conversion pair's MarketData (crosses only)
    rates: Any = None  # (rate at each bar's open, at each close), quote -> account; None: 1
    evaluator: Any = None  # aio.backtest.evaluator.Evaluator over run.bars
    optimize: Any = None  # aio.optimize.run.OptimizeResult when a search ran

    @property
    def synthetic(self) -> bool:
        return bool(self.market is not None and self.market.synthetic)

    def artifact(self, name: str) -> Path:
        path = self.run_dir / name
        self.artifacts[name.split(".")[0]] = str(path)
        return path


def _hydra_run_dir() -> Path:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # called outside Hydra (tests, notebooks)
        return Path.cwd()


# -- stages ---------------------------------------------------------------------------


def stage_ingest(run: Run) -> None:
    source_cls, data_cfg = plugin_config("data", run.cfg)
    source = source_cls(data_cfg)
    if run.task != "download" and hasattr(data_cfg, "symbol"):
        # the account comes first: a conversion series that cannot be had fails before any work
        from aio.backtest.account import load_conversion_market, plan_for

        bt = build_backtest_config(run.cfg)
        run.conversion = plan_for(bt, data_cfg.symbol)
        if run.conversion.kind == "pair" and run.task not in NO_ACCOUNT_TASKS:
            run.conversion_market = load_conversion_market(run.conversion, bt, source_cls, data_cfg)
    if run.task == "download":
        if not hasattr(source, "download"):
            raise ConfigError(f"task=download needs a downloadable data source; data={run.cfg.data.name} is not one (use data=dukascopy)")
        summary = source.download()
        run.metrics["download"] = summary
        return
    run.market = source.load()
    log.info("data loaded", source=run.market.source, kind=run.market.kind, rows=run.market.frame.height,
             symbol=run.market.symbol, synthetic=run.market.synthetic)


def stage_bars(run: Run) -> None:
    builder, bars_cfg = plugin_config("bars", run.cfg)
    run.bars = builder(bars_cfg).build(run.market)
    if len(run.bars) == 0:
        raise ConfigError("no bars in the requested range: check data.start/data.end and the data source")
    if run.conversion is not None and run.conversion.kind != "none":
        from aio.backtest.account import rates_for

        pair = builder(bars_cfg).build(run.conversion_market).frame if run.conversion_market is not None else None
        if run.conversion.kind != "pair" or pair is not None:
            run.rates = rates_for(run.conversion, run.bars.frame, pair)
    from aio.quality import check_bars

    quality = {"source": dict(run.market.quality or {}), "bars": check_bars(run.bars)}
    if run.synthetic:
        quality["synthetic"] = run.market.meta.get("synthetic", True)
    run.artifact("data_quality.json").write_text(json.dumps(quality, indent=2, default=str))
    log.info("bars built", bars=len(run.bars), timeframe=run.bars.timeframe, side=run.bars.side)


def stage_indicators(run: Run) -> None:
    from aio.indicators import compute_indicator_set

    _, ind_cfg = plugin_config("indicator_set", run.cfg, "indicators")
    run.features = compute_indicator_set(run.bars.frame, ind_cfg)
    log.info("indicators computed", columns=len(run.features))


def stage_strategy(run: Run) -> None:
    from aio.strategy.kinds import load_strategy

    from aio.discover.library import resolve_from

    # strategy.from=file.yaml | library:<id> replaces the section (params still override)
    run.strategy = load_strategy(resolve_from(section(run.cfg, "strategy"), section(run.cfg, "store")))
    run.params = dict(run.strategy.params)
    rules_with_model = run.strategy.uses_model()
    if rules_with_model and not run.predictions:
        raise ConfigError(
            f"strategy rules {rules_with_model} read model.* outputs but no model ran: choose model=chartnet or knn_analogs"
        )


def stage_optimize(run: Run) -> None:
    opt = section(run.cfg, "optimize")
    if not opt or opt.get("name") in (None, "none"):
        return
    from aio.optimize import optimize_run

    best = optimize_run(run)
    run.params.update(best)


def build_backtest_config(cfg: DictConfig):
    from aio.backtest import BacktestConfig
    from aio.config import build

    return build(BacktestConfig, section(cfg, "backtest"), "backtest")


def backtest_config(run: Run):
    from aio.backtest.evaluator import backtest_config as impl

    return impl(run)


def stage_backtest(run: Run) -> None:
    from aio.backtest import write_equity_parquet, write_trades_csv
    from aio.backtest.evaluator import evaluator_for_run
    from aio.report.headline import headline

    e = evaluator_for_run(run).run(run.strategy, run.params)
    run.backtest = e.result
    write_trades_csv(e.result, run.artifact("trades.csv"), synthetic=run.synthetic)
    write_equity_parquet(e.result, run.bars.frame, run.artifact("equity.parquet"), synthetic=run.synthetic)
    run.metrics["backtest"] = e.metrics
    run.metrics["headline"] = headline(run)
    log.info("backtest done", trades=e.metrics.get("trade_count"), net_profit=e.metrics.get("net_profit"),
             headline=run.metrics["headline"]["sample"])


def stage_export(run: Run) -> None:
    from aio.errors import ExportError
    from aio.pine import export_strategy

    try:
        text = export_strategy(run.strategy, run.params, backtest_config(run), sizer=section(run.cfg, "sizer"),
                               synthetic=run.synthetic)
    except ExportError as exc:
        run.metrics["pine_export"] = {"exported": False, "reason": str(exc)}
        log.warning("pine export refused", reason=str(exc))
        return
    run.artifact("strategy.pine").write_text(text)
    run.metrics["pine_export"] = {"exported": True}


def stage_report(run: Run) -> None:
    from aio.report.run_report import write_run_report

    write_run_report(run, run.artifact("report.html"))


# Model stages (aio/models/stages.py); they do nothing with model=none.
def stage_dataset(run: Run) -> None:
    from aio.models.stages import stage_dataset as impl

    impl(run)


def stage_train(run: Run) -> None:
    from aio.models.stages import stage_train as impl

    impl(run)


def stage_infer(run: Run) -> None:
    from aio.models.stages import stage_infer as impl

    impl(run)


def stage_store(run: Run) -> None:
    from aio.models.stages import stage_store as impl

    impl(run)


def stage_similar(run: Run) -> None:
    from aio.models.stages import stage_similar as impl

    impl(run)


def stage_discover(run: Run) -> None:
    from aio.discover.stage import stage_discover as impl

    impl(run)


def stage_discover_export(run: Run) -> None:
    from aio.discover.stage import stage_discover_export as impl

    impl(run)


def stage_strategies(run: Run) -> None:
    from aio.discover.stage import stage_strategies as impl

    impl(run)


def stage_populate(run: Run) -> None:
    from aio.discover.populate import stage_populate as impl

    impl(run)


def stage_vlm_pairs(run: Run) -> None:
    from aio.vlm.strategy_pairs import stage_vlm_pairs as impl

    impl(run)


def stage_analyze(run: Run) -> None:
    from aio.vlm.analyze import stage_analyze as impl

    impl(run)


# Live stages (aio/live, aio/serve).
def stage_paper(run: Run) -> None:
    from aio.live.stages import stage_paper as impl

    impl(run)


def stage_publish(run: Run) -> None:
    from aio.live.stages import stage_publish as impl

    impl(run)


def stage_control(run: Run) -> None:
    from aio.live.stages import stage_control as impl

    impl(run)


def stage_serve(run: Run) -> None:
    from aio.serve.app import stage_serve as impl

    impl(run)


def stage_import_pine(run: Run) -> None:
    from aio.pine.importer import stage_import_pine as impl

    impl(run)


STAGES: dict[str, Callable[[Run], None]] = {
    "ingest": stage_ingest,
    "bars": stage_bars,
    "indicators": stage_indicators,
    "dataset": stage_dataset,
    "train": stage_train,
    "infer": stage_infer,
    "store": stage_store,
    "similar": stage_similar,
    "analyze": stage_analyze,
    "strategy": stage_strategy,
    "optimize": stage_optimize,
    "backtest": stage_backtest,
    "export": stage_export,
    "report": stage_report,
    "paper": stage_paper,
    "publish": stage_publish,
    "control": stage_control,
    "serve": stage_serve,
    "import_pine": stage_import_pine,
    "discover": stage_discover,
    "discover_export": stage_discover_export,
    "strategies": stage_strategies,
    "populate": stage_populate,
    "vlm_pairs": stage_vlm_pairs,
}

# tasks that never book money (so they need no conversion series)
NO_ACCOUNT_TASKS = {"download", "dataset", "train", "similar", "analyze", "import_pine", "publish", "control", "serve",
                    "strategies"}

TASK_STAGES: dict[str, list[str]] = {
    "download": ["ingest"],
    "run": ["ingest", "bars", "indicators", "dataset", "train", "infer", "store", "strategy", "optimize", "discover",
            "backtest", "export", "discover_export", "report"],
    "optimize": ["ingest", "bars", "indicators", "dataset", "train", "infer", "store", "strategy", "optimize",
                 "backtest", "export", "report"],
    "dataset": ["ingest", "bars", "indicators", "dataset"],
    "train": ["ingest", "bars", "indicators", "dataset", "train", "infer", "vlm_pairs"],
    "similar": ["similar"],
    "analyze": ["analyze"],
    "paper": ["paper", "report"],
    "publish": ["publish"],
    "control": ["control"],
    "serve": ["serve"],
    "import_pine": ["import_pine"],
    "discover": ["ingest", "bars", "indicators", "dataset", "train", "infer", "store", "strategy", "optimize",
                 "discover", "backtest", "export", "discover_export", "report"],
    "strategies": ["strategies"],
    "populate": ["ingest", "bars", "populate"],
}


def register_tasks(registry) -> None:
    """TASK_STAGES into the registry (kind ``task``): ``task=NAME`` is looked up there, so a
    plugin task (a list of stage names from STAGES and/or ``callable(run)`` stages) works too."""
    for name, stages in TASK_STAGES.items():
        registry.add("task", name, list(stages), description=" -> ".join(stages))


def task_stages(task: str) -> list[tuple[str, Callable[[Run], None]]]:
    """The (name, function) stages of ``task`` from the registry."""
    from aio.registry import registry

    out = []
    for i, item in enumerate(registry.get("task", task)):
        if callable(item):
            out.append((getattr(item, "__name__", f"stage{i}").removeprefix("stage_"), item))
        elif item in STAGES:
            out.append((item, STAGES[item]))
        else:
            raise ConfigError(f"task {task!r} names stage {item!r}, which does not exist; stages: {', '.join(STAGES)}")
    return out


# -- the run ------------------------------------------------------------------------------


def config_hash(cfg: DictConfig) -> str:
    plain = OmegaConf.to_container(cfg, resolve=True)
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


def hardware() -> dict[str, Any]:
    """The machine, for the manifest (aio.hardware's probe; the GPU only when the run loaded torch)."""
    from aio.hardware import manifest_info

    return manifest_info()


# (plugin kind, config section, tasks that use it; None: every task) validated before any work starts
PLUGIN_SECTIONS = [("data", "data", None), ("bars", "bars", None), ("indicator_set", "indicators", None),
                   ("model", "model", None), ("renderer", "renderer", "model"), ("store", "store", "model")]
MODEL_TASKS = ("dataset", "train", "similar", "analyze")  # tasks that render charts / read the pattern store


def validate(cfg: DictConfig, task: str) -> None:
    """Every section the run will use, built into its typed config up front.

    A typo in the strategy or the optimiser must not surface after minutes of
    downloading and training: each error names the key, the value and what is allowed.
    Cheap checks come first and only config types are imported (a model is never built,
    so torch and Lightning never load here), so a wrong value is reported within a second or two.
    """
    from aio.config import build
    from aio.registry import registry

    model = section(cfg, "model")
    model_on = bool(model) and model.get("name") not in (None, "none")
    if task in ("run", "discover"):
        from aio.discover.stage import validate as validate_discover

        validate_discover(cfg, task)
    if task in ("run", "optimize", "discover"):
        from aio.backtest import BacktestConfig
        from aio.sizing.chain import parse_chain

        bt = build(BacktestConfig, section(cfg, "backtest"), "backtest")
        symbol = (section(cfg, "data") or {}).get("symbol")
        if symbol:  # an unknown instrument names the keys to set, before any data is read
            import dataclasses

            dataclasses.replace(bt, symbol=str(symbol)).instrument_spec()
        parse_chain(section(cfg, "sizer") or None)
        opt = section(cfg, "optimize")
        if opt and opt.get("name") not in (None, "none"):
            from aio.optimize.config import OptimizeConfig

            oc = build(OptimizeConfig, opt, "optimize")
            for name in oc.objectives:
                registry.get_plugin("objective", name)  # UnknownPluginError listing the objectives
        from aio.discover.library import resolve_from
        from aio.strategy.kinds import load_strategy

        load_strategy(resolve_from(section(cfg, "strategy"), section(cfg, "store")))
    for kind, key, when in PLUGIN_SECTIONS:
        if when == "model" and not (model_on or task in MODEL_TASKS):
            continue  # not used by this run: its plugin is never loaded
        if section(cfg, key):
            plugin_section(kind, cfg, key)
    if model and task in ("run", "optimize", "train", "analyze", "discover"):
        plugin, mcfg = plugin_section("model", cfg)
        # Declared at registration (registry.add(..., preflight=fn(config))), looked up
        # without building the model: building chartnet would import torch and Lightning.
        preflight = plugin.get_meta("preflight")
        if preflight is None and isinstance(plugin.obj, type):
            preflight = _class_preflight(plugin.obj)
        if preflight is not None:  # e.g. a VLM whose weights are missing
            preflight(mcfg)
    if model_on and task in ("run", "optimize", "train", "discover"):
        from aio.hardware import choose, detect
        from aio.train.config import trainer_config

        tc = trainer_config(section(cfg, "trainer"))
        choose(detect(), accelerator=tc.accelerator, devices=tc.devices, precision=tc.precision)  # GPU asked, none here


def _class_preflight(cls: type) -> Callable[[Any], None] | None:
    """A model class's ``preflight`` declared as a classmethod/staticmethod taking the config."""
    import inspect

    raw = inspect.getattr_static(cls, "preflight", None)
    if isinstance(raw, (classmethod, staticmethod)):
        return getattr(cls, "preflight")
    return None


def run(cfg: DictConfig, run_dir: Path | None = None) -> Run:
    """Validate, run the task's stages, write the run folder. A run that fails still
    writes ``manifest.json`` with ``status: failed``, the stage and the error (so the
    folder never looks like a finished run) and re-raises."""
    from aio.logs import setup_logging
    from aio.registry import registry

    run_dir = Path(run_dir or _hydra_run_dir()).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"stage": "config", "run": None, "task": cfg.get("task"),
                             "experiment": cfg.get("experiment")}
    try:
        rs = run_section(cfg)
        state["task"] = rs.task
        setup_logging(run_dir, rs.log_level)
        registry.ensure_discovered(rs.plugins_dir)
        stages = task_stages(rs.task)
        state["stage"] = "validate"
        validate(cfg, rs.task)
        r = Run(cfg=cfg, run_dir=run_dir, task=rs.task, seed=rs.seed)
        state["run"] = r
        np.random.seed(rs.seed)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        structlog.contextvars.bind_contextvars(run=run_dir.name)
        log.info("run started", task=rs.task, experiment=rs.experiment, run_dir=str(run_dir))
        for name, fn in stages:
            state["stage"] = name
            t0 = time.perf_counter()
            fn(r)
            r.timings[name] = round(time.perf_counter() - t0, 3)
        state["stage"] = "finish"
        from aio.labels import label_run_folder, synthetic_note

        note = synthetic_note(r.market.meta if r.market is not None else None)
        r.metrics["synthetic"] = r.synthetic
        if r.synthetic:
            r.metrics["synthetic_note"] = note
            plant = (r.market.meta or {}).get("plant")
            if plant:
                r.metrics["plant"] = {k: v for k, v in plant.items() if k != "event_ts_init"}
        r.metrics["timings_s"] = r.timings
        if r.conversion is not None:
            r.metrics["account"] = {"currency": r.conversion.account, "quote": r.conversion.quote,
                                    "conversion": r.conversion.describe()}
        if r.params:
            r.metrics["params"] = r.params
        (run_dir / "metrics.json").write_text(dumps(r.metrics))
        _write_manifest(cfg, run_dir, r, rs.task, rs.experiment, status="ok")
        label_run_folder(run_dir, r.synthetic, note)
    except BaseException as exc:
        _write_failed(cfg, run_dir, state, exc)
        raise
    r.objective = objective_of(r)
    log.info("run finished", seconds=round(sum(r.timings.values()), 2))
    print(f"run_dir: {run_dir}", flush=True)
    return r


def objective_of(run: Run) -> float | None:
    """What a Hydra sweeper optimises: the headline (out of sample when a search ran),
    in the optimiser's own objective, else the headline's net profit."""
    head = run.metrics.get("headline")
    if not isinstance(head, dict):
        return None
    m = head.get("metrics") or {}
    if head.get("sample") == "out_of_sample" and run.optimize is not None:
        v = run.optimize.summary.get("oos_objective")  # the optimiser's objective, out of sample
        if v is not None:
            return float(v)
    v = m.get("net_profit")
    return float(v) if v is not None else None


def _write_manifest(cfg: DictConfig, run_dir: Path, r: Run | None, task: Any, experiment: Any, *, status: str,
                    failure: dict[str, Any] | None = None) -> None:
    from aio.registry import registry

    try:
        chash = config_hash(cfg)
    except Exception:  # an interpolation that does not resolve is itself the failure
        chash = None
    manifest = {
        "status": status,
        **(failure or {}),
        "git_commit": _git_commit(),
        "config_hash": chash,
        "task": task,
        "experiment": experiment,
        "synthetic": bool(r is not None and r.synthetic),
        "data": None if r is None or r.market is None else {
            "source": r.market.source, "symbol": r.market.symbol, "rows": r.market.frame.height,
            "meta": r.market.meta,
        },
        "hardware": hardware(),
        "artifacts": {} if r is None else r.artifacts,
        "timings_s": {} if r is None else r.timings,
        "plugins": list(registry.loaded_sources),
        "plugin_files": list(registry.plugin_files),  # every local plugin file that ran
    }
    (run_dir / "manifest.json").write_text(dumps(manifest))


def _write_failed(cfg: DictConfig, run_dir: Path, state: dict[str, Any], exc: BaseException) -> None:
    """The failed run's manifest; never masks the original error."""
    from aio.errors import AioError

    failure = {"stage": state["stage"],
               "error": {"type": type(exc).__name__, "message": str(exc) or repr(exc),
                         "user_error": isinstance(exc, AioError)}}
    try:
        if not (run_dir / "config.yaml").exists():
            try:
                (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
            except Exception:
                (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        _write_manifest(cfg, run_dir, state["run"], state["task"], state["experiment"], status="failed",
                        failure=failure)
        if not failure["error"]["user_error"]:  # a user error is printed once, by the CLI
            log.error("run failed", stage=state["stage"], error=failure["error"]["message"])
    except Exception as inner:  # pragma: no cover - e.g. the disk is full
        log.error("could not write the failed run's manifest", error=str(inner))


def dumps(obj: Any) -> str:
    """JSON for run files: numpy values made plain, NaN/inf (e.g. a Sharpe with no trades) as null."""
    from aio.jsonio import dumps as _dumps

    return _dumps(obj)
