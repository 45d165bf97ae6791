"""Registers aio's built-in plugins, the same way a third-party package would.

Exposed as the ``builtin`` entry point of the ``aio.plugins`` group. Nothing here
imports a subsystem: each built-in is declared by dotted path (``"module:attr"``,
its config the same way) with its description, and its module is imported on the
first lookup of that plugin. Starting the app, composing a config and listing the
plugins therefore cost no LanceDB, scipy, pandas or torch import.

Adding a built-in: one row in :data:`BUILTINS` (``tests/test_registry.py`` checks
each row against what the module's own ``register(registry)`` adds, so the two never
drift), or, for a module that registers a whole family at once, an entry in
:data:`PROVIDERS` naming its ``register`` and the kinds it provides (run on the first
lookup of one of them).
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Builtin(NamedTuple):
    kind: str
    name: str
    target: str  # "module:attr" of the plugin object
    config: str | None  # "module:attr" of its config dataclass
    description: str
    module: str  # whose register(registry) adds the same entry
    meta: dict[str, Any] = {}


def _steps() -> list[Builtin]:
    docs = {
        "fixed": "Fixed units per order (default: the backtest's configured quantity).",
        "percent_of_equity": "Order value = percent of realised equity at the decision bar.",
        "vol_target": "Risk ``risk_pct`` of equity over ``atr_mult`` ATRs: units = risk / (mult * ATR).",
        "kelly": "Fractional Kelly, capped: risk f = min(fraction * (W - (1-W)/R), cap) of equity,",
        "confidence": "Scale by the model's calibrated probability: linear from min_scale at ``low``",
        "drawdown_guard": "Scale down as realised equity falls below its peak; stop past ``halt_pct``.",
    }
    return [Builtin("sizer", n, f"aio.sizing.steps:STEPS.{n}", None, d, "aio.sizing") for n, d in docs.items()]


def _objectives() -> list[Builtin]:
    docs = {
        "sharpe": "maximize Sharpe ratio of the equity curve (annualised)",
        "sortino": "maximize Sortino ratio (downside deviation)",
        "calmar": "maximize annual return / max drawdown",
        "profit_factor": "maximize gross profit / gross loss (capped at 100)",
        "sqn": "maximize System Quality Number (Van Tharp)",
        "net_profit": "maximize final equity - capital after costs (open trade marked at the last close)",
        "return_pct": "maximize net profit in percent of initial capital",
        "max_drawdown": "minimize largest peak-to-trough equity drop",
    }
    return [Builtin("objective", n, f"aio.optimize.objectives:BY_NAME.{n}", "aio.optimize.objectives:ObjectiveConfig",
                    d, "aio.optimize") for n, d in docs.items()]


def _samplers() -> list[Builtin]:
    docs = {
        "tpe": "Tree-structured Parzen Estimator (multivariate, grouped for conditional spaces).",
        "cmaes": "CMA-ES over numeric parameters (categoricals fall back to random sampling).",
        "random": "Uniform random search (a baseline for the others).",
        "grid": "Every feasible grid point once (float parameters need a step).",
        "nsga2": "NSGA-II for several objectives at once (e.g. net profit vs drawdown).",
    }
    return [Builtin("sampler", n, f"aio.optimize.samplers:{n}", None, d, "aio.optimize") for n, d in docs.items()]


_VLM_PREFLIGHT = {"preflight": "aio.builtin:vlm_preflight"}

BUILTINS: list[Builtin] = [
    Builtin("data", "synthetic", "aio.data.synthetic:SyntheticSource", "aio.data.synthetic:SyntheticDataConfig",
            "seeded synthetic FX ticks (sessions, spreads, weekend gaps), labelled synthetic", "aio.data.synthetic"),
    Builtin("data", "file", "aio.data.file:FileSource", "aio.data.file:FileDataConfig",
            "bars or ticks from CSV/Parquet (column mapping, time zones, bad-row report)", "aio.data.file"),
    Builtin("data", "dukascopy", "aio.data.dukascopy.source:DukascopySource",
            "aio.data.dukascopy.config:DukascopyConfig",
            "Dukascopy ticks: bi5 datafeed, raw cache, Hive Parquet catalog", "aio.data.dukascopy"),
    Builtin("bars", "time", "aio.bars:TimeBars", "aio.bars:TimeBarsConfig",
            "time bars (any timeframe, bid/ask/mid) from ticks or finer bars", "aio.bars"),
    Builtin("indicator_set", "classic", "aio.indicators.sets:BUILTIN_SETS.classic", None,
            "indicator set classic: rsi_14, macd, bb, atr_14, ema_20, ema_50, sma_20, sma_50, sma_200, stoch, adx_14",
            "aio.indicators"),
    Builtin("indicator_set", "tradingview", "aio.indicators.sets:BUILTIN_SETS.tradingview", None,
            "indicator set tradingview: rsi_14, macd, bb, bbw_20, atr_14, ema_20, sma_50, stoch_k_14, dmi, mfi_14",
            "aio.indicators"),
    Builtin("strategy", "rules", "aio.strategy.spec:load_spec", None,
            "declarative rule strategy (conf/strategy/*.yaml)", "aio.strategy"),
    *_steps(),
    *_objectives(),
    *_samplers(),
    Builtin("renderer", "candles", "aio.render.candles:CandleRenderer", "aio.render.candles:CandlesConfig",
            "OHLC candles (+volume, overlays, oscillator) as numpy images/PNG", "aio.render"),
    Builtin("renderer", "plotly", "aio.render.plotly_chart:PlotlyRenderer", "aio.render.plotly_chart:PlotlyConfig",
            "interactive HTML candlestick charts for reports", "aio.render"),
    Builtin("model", "chartnet", "aio.models:make_chartnet", "aio.models.config:ChartNetConfig",
            "small CNN over chart images + MLP over features; walk-forward, calibrated", "aio.models"),
    Builtin("model", "knn_analogs", "aio.models:make_knn_analogs", "aio.models.config:KnnAnalogsConfig",
            "outcomes of the k most similar past charts from the pattern library (no training)", "aio.models"),
    Builtin("model", "none", "aio.models:NoModel", "aio.models.config:NoModelConfig",
            "no model: rules cannot read model.*", "aio.models"),
    Builtin("model", "minicpm_v", "aio.vlm:make_minicpm_v", "aio.vlm.config:MiniCPMVConfig",
            "MiniCPM-V 4.6/4.7 on chart images: JSON answers, LoRA, vision embeddings", "aio.vlm", _VLM_PREFLIGHT),
    Builtin("model", "hf_vlm", "aio.vlm:make_hf_vlm", "aio.vlm.config:HFVLMConfig",
            "any Hugging Face image-text-to-text model on chart images: JSON answers, LoRA", "aio.vlm",
            _VLM_PREFLIGHT),
    Builtin("store", "lancedb", "aio.store.library:open_library", "aio.store.config:LanceDBStoreConfig",
            "pattern library on embedded LanceDB (patterns, strategies, performance)", "aio.store"),
    Builtin("pine_template", "default", "aio.pine.builder:default_template", None,
            "aio's standard Pine v6 layout", "aio.pine"),
    Builtin("live_source", "replay", "aio.live.sources:ReplaySource", None,
            "a data source's ticks or bars replayed at a speed multiple (0: as fast as possible)", "aio.live"),
    Builtin("live_source", "redis", "aio.live.sources:RedisSource", None,
            "Redis Streams through a consumer group (XREADGROUP/XACK); schema in docs/live.md", "aio.live"),
    Builtin("proposer", "distill", "aio.discover.proposers.distill:Distill", None,
            "shallow trees fitted to the model's out-of-sample probabilities (discovery)", "aio.discover.proposers"),
    Builtin("proposer", "grammar_search", "aio.discover.proposers.grammar_search:GrammarSearch", None,
            "evolutionary search over the grammar, blind to any model (the control)", "aio.discover.proposers"),
    Builtin("proposer", "library", "aio.discover.proposers.library:LibraryProposer", None,
            "the strategy library and the shipped strategies, re-tested", "aio.discover.proposers"),
    Builtin("proposer", "vlm", "aio.discover.proposers.vlm:VLMProposer", None,
            "a vision-language model writes rules under grammar-constrained decoding", "aio.discover.proposers"),
]

# "module:register" -> the kinds it adds; run on the first lookup of one of those kinds.
PROVIDERS: dict[str, tuple[str, ...]] = {
    # every TA-Lib function + the TV variants (imports TA-Lib, which imports pandas); it
    # re-adds the two sets above, identical
    "aio.indicators:register": ("indicator",),
    "aio.pipeline:register_tasks": ("task",),  # pipeline.TASK_STAGES
}

# Modules with a register(registry) and nothing else declared above (e.g. the dataset
# config group has no plugin kind); listed so the drift test covers every subsystem.
NO_PLUGINS = ("aio.dataset",)


def register(registry) -> None:
    for b in BUILTINS:
        registry.add(b.kind, b.name, b.target, config=b.config, description=b.description, **b.meta)
    for ref, kinds in PROVIDERS.items():
        registry.add_provider(kinds, ref)


def vlm_preflight(config: Any) -> None:
    """A VLM's weights must be on disk unless downloading is allowed (checked before any work)."""
    from aio.vlm.plugin import VLMModel

    VLMModel(config).preflight()  # holds the config only: nothing is loaded
