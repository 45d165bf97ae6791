"""Pipeline stages of discovery: ``discover`` (propose -> funnel -> library -> outputs,
adopting the best accepted strategy), ``discover_export`` (the Pine header says what
strategy.pine is) and ``strategies`` (list/filter/export the strategy library)."""

from __future__ import annotations

import csv
import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from aio.config import build, param
from aio.discover.funnel import FunnelConfig
from aio.discover.grammar import GrammarConfig
from aio.errors import ConfigError

log = structlog.get_logger(__name__)

MODEL_PROPOSERS = {"distill", "vlm"}  # proposers that read the model (the rest are controls)


@dataclass
class DiscoverConfig:
    """``discover`` section (conf/discover/*.yaml)."""

    name: str = param("funnel", choices=["none", "funnel"])
    proposers: list[str] = field(default_factory=lambda: ["distill", "grammar_search", "library"])
    budget: int = param(600, ge=1, help="candidates each searching proposer (distill, grammar_search) proposes")
    holdout_pct: float = param(20.0, gt=0, lt=90, help="last share of the bars, seen only by accepted candidates")
    embargo_bars: int = param(60, ge=0, help="bars between the discovery window and the holdout")
    seed: int | None = param(None, ge=0, help="default: the run seed")
    adopt: bool = param(True, help="the best accepted strategy becomes the run's strategy (backtest, Pine)")
    grammar: GrammarConfig = field(default_factory=GrammarConfig)
    funnel: FunnelConfig = field(default_factory=FunnelConfig)
    options: dict[str, dict[str, Any]] = field(  # per proposer: discover.options.NAME.*
        default_factory=lambda: {"distill": {}, "grammar_search": {}, "library": {}})
    query: dict[str, Any] = field(  # task=strategies: filters (StrategiesQuery)
        default_factory=lambda: {"accepted": None, "proposer": None, "symbol": None, "id": None, "export": None,
                                 "limit": 50})
    # the vlm proposer (VLMProposerConfig; options.vlm overrides) and task=populate (PopulateConfig)
    vlm: dict[str, Any] = field(default_factory=lambda: _defaults("aio.discover.proposers.vlm:VLMProposerConfig"))
    populate: dict[str, Any] = field(default_factory=lambda: _defaults("aio.discover.populate:PopulateConfig"))


def _defaults(ref: str) -> dict[str, Any]:
    """A sub-config's own defaults as a plain section (one place: that dataclass)."""
    import dataclasses
    import importlib

    mod, _, name = ref.partition(":")
    return dataclasses.asdict(getattr(importlib.import_module(mod), name)())


def _with_vlm(dc: "DiscoverConfig") -> "DiscoverConfig":
    if dc.vlm:
        dc.options["vlm"] = {**dc.vlm, **(dc.options.get("vlm") or {})}
    return dc


def discover_config(cfg: Any) -> DiscoverConfig:
    from aio.appconfig import section

    sec = section(cfg, "discover") or {"name": "none"}
    return _with_vlm(build(DiscoverConfig, sec, "discover", ignore=("_target_",)))


def proposer(name: str, options: dict[str, Any] | None) -> Any:
    from aio.registry import registry

    cls = registry.get("proposer", name)
    opts = build(cls.Config, options or {}, f"discover.options.{name}") if hasattr(cls, "Config") else None
    return cls(opts)


def validate(cfg: Any, task: str) -> None:
    """Up front: the discover section, its proposers and their options."""
    dc = discover_config(cfg)
    if dc.name == "none":
        if task == "discover":
            raise ConfigError("task=discover needs discover=funnel (e.g. +experiment=eurusd_14d or discover=funnel)")
        return
    for name in dc.proposers:
        proposer(name, dc.options.get(name))
    from aio.appconfig import section

    model = (section(cfg, "model") or {}).get("name") or "none"
    needs = sorted(MODEL_PROPOSERS & set(dc.proposers))
    if needs and model == "none" and set(dc.proposers) <= MODEL_PROPOSERS:
        raise ConfigError(f"discover.proposers has {needs}, which distil a model's predictions, but model=none: choose "
                          f"model=chartnet (or knn_analogs), or drop them: discover.proposers=[grammar_search,library]")
    from aio.registry import registry

    known = set(registry.names("proposer"))
    unknown = sorted(set(dc.options) - known)
    if unknown:
        raise ConfigError(f"config key discover.options has {unknown}, which are not proposers ({', '.join(sorted(known))})")
    for name in set(dc.options) - set(dc.proposers):
        proposer(name, dc.options.get(name))  # options of an unused proposer must still be valid
    if "vlm" in dc.proposers:  # needs a vision-language model: say so before any data is loaded
        from aio.appconfig import section
        from aio.discover.proposers.vlm import model_section

        model_section(section(cfg, "model"), (dc.options.get("vlm") or {}).get("model") or {})


# -- the discover stage -------------------------------------------------------------------


def stage_discover(run: Any) -> None:
    from aio.discover.funnel import evaluator, make_windows, open_ledger, run_funnel
    from aio.discover.grammar import Grammar
    from aio.discover.proposers import ProposeContext
    from aio.backtest.evaluator import backtest_config

    dc = discover_config(run.cfg)
    if dc.name == "none":
        if run.task == "discover":
            raise ConfigError("task=discover needs discover=funnel")
        return
    validate(run.cfg, run.task)
    out_dir = Path(run.run_dir) / "discover"
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = run.bars.frame
    n = frame.height
    bt = backtest_config(run)
    seed = dc.seed if dc.seed is not None else run.seed
    w = make_windows(n, dc.holdout_pct, dc.embargo_bars, dc.funnel.tune)
    symbol, tf = str(run.bars.symbol), str(run.bars.timeframe)
    disc = frame.slice(0, w.discovery_end)
    rates = getattr(run, "rates", None)
    ev = evaluator(disc, bt, symbol, tf, None if rates is None else (rates[0][: w.discovery_end], rates[1][: w.discovery_end]))
    prop_arrays = {c: disc.get_column(c).to_numpy()[: w.proposal_end] for c in ("open", "high", "low", "close", "volume")}
    grammar = Grammar(dc.grammar, prop_arrays)
    from aio.strategy.rules import price_env

    env = price_env({c: disc.get_column(c).to_numpy() for c in ("open", "high", "low", "close", "volume")})
    model_id = getattr(run.model, "model_id", None) if run.model is not None else None
    lib = _library(run)
    ctx = ProposeContext(grammar=grammar, evaluator=ev, proposal_end=w.proposal_end, discovery_end=w.discovery_end,
                         predictions={k: np.asarray(v)[: w.discovery_end] for k, v in (run.predictions or {}).items()},
                         model_id=model_id, library=lib, rng=np.random.default_rng(seed),
                         min_trades=dc.funnel.screen_min_trades, env=env, symbol=symbol, timeframe=tf,
                         model_cfg=_model_section(run))
    cands = []
    per_proposer: dict[str, int] = {}
    for name in dc.proposers:
        if name in MODEL_PROPOSERS and not ctx.predictions:
            ctx.notes.append(f"{name} skipped: no model ran (model=none), so there is nothing to distil")
            per_proposer[name] = 0
            continue
        got = proposer(name, dc.options.get(name)).propose(ctx, dc.budget if name != "library" else 0)
        per_proposer[name] = len(got)
        cands.extend(got)
        log.debug("candidates proposed", proposer=name, candidates=len(got))
    ledger = open_ledger(out_dir)
    res = run_funnel(cands, frame=frame, bt=bt, cfg=dc.funnel, grammar_cfg=dc.grammar, windows=w, ledger=ledger,
                     seed=seed, symbol=symbol, timeframe=tf, rates=rates, ev=ev)
    run.artifacts["discover/ledger"] = str(ledger.path)
    lineage = _lineage(run, w, model_id, res)
    written = []
    if lib is not None:
        written = _write_library(lib, res.candidates, lineage)
    files = write_outputs(run, res, out_dir, bt, lineage)
    summary = summarize(res, dc, per_proposer, ctx.notes, lineage)
    summary["library"] = {"path": str(lib.path) if lib is not None else None, "rows_written": len(written)}
    summary["files"] = files
    run.metrics["discover"] = summary
    best = res.best()
    if best is not None and best.accepted and dc.adopt:
        run.strategy = best.parsed
        run.params = {**best.parsed.params, **best.params}
        summary["adopted"] = {"id": best.id, "proposer": best.proposer, "rule": best.text}
    else:
        summary["adopted"] = None
    log.info("discovery done", **{k: v for k, v in res.counts.items()}, seconds=res.seconds,
             adopted=(summary["adopted"] or {}).get("id"))


def _model_section(run: Any) -> dict[str, Any] | None:
    from aio.appconfig import section

    return section(run.cfg, "model") or None


def _library(run: Any) -> Any:
    from aio.appconfig import section
    from aio.discover.library import open_library
    from aio.models.stages import store_config

    if not section(run.cfg, "store"):
        return None
    return open_library(store_config(run.cfg), run.run_dir)


def _write_library(lib: Any, cands: list[Any], lineage: dict[str, Any]) -> list[str]:
    from aio.discover.library import write_candidates

    return write_candidates(lib, cands, lineage)


def _iso(ns: Any) -> str | None:
    import datetime as dt

    return None if ns is None else dt.datetime.fromtimestamp(int(ns) / 1e9, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _lineage(run: Any, w: Any, model_id: str | None, res: Any) -> dict[str, Any]:
    ts = run.bars.frame.get_column("ts_event")
    meta = run.market.meta if run.market is not None else {}
    return {
        "teacher_model_id": model_id, "symbol": str(run.bars.symbol), "timeframe": str(run.bars.timeframe),
        "data_source": getattr(run.market, "source", None), "synthetic": bool(run.synthetic),
        "plant": {k: v for k, v in ((meta or {}).get("plant") or {}).items() if k != "event_ts_init"} or None,
        "window": {"start": _iso(ts[0]), "end": _iso(ts[-1]), "discovery_end": _iso(ts[w.discovery_end - 1]),
                   "holdout_start": _iso(ts[w.holdout_start]), **w.as_dict()},
        "ledger": res.ledger, "run_dir": str(run.run_dir),
    }


def summarize(res: Any, dc: DiscoverConfig, per_proposer: dict[str, int], notes: list[str],
              lineage: dict[str, Any]) -> dict[str, Any]:
    model = res.best({p for p in dc.proposers if p in MODEL_PROPOSERS})
    control = res.best({p for p in dc.proposers if p not in MODEL_PROPOSERS})

    def card(c: Any) -> dict[str, Any] | None:
        return None if c is None else {k: v for k, v in c.row().items()}

    verdict = _verdict(model, control, dc)
    accepted = res.accepted
    headline = None
    best = res.best()
    if best is not None and best.accepted:
        headline = {"sample": "holdout", "id": best.id, "rule": best.text, "metrics": best.holdout}
    return {
        "funnel": res.counts,
        "proposed_by": per_proposer,
        "accept": asdict(dc.funnel.accept),
        "windows": lineage["window"],
        "ledger": res.ledger,
        "benchmarks": res.benchmarks,
        "accepted": [c.id for c in accepted],
        "headline": headline,
        "model_vs_control": {"model": card(model), "control": card(control), "verdict": verdict},
        "verdict": ("no discovered strategy passed the funnel; the run keeps the configured baseline"
                    if not accepted else f"{len(accepted)} discovered strateg{'y' if len(accepted) == 1 else 'ies'} "
                    f"passed every gate; the best by pre-holdout figures is {best.id}"),
        "notes": notes,
        "synthetic": lineage["synthetic"],
        "plant": lineage["plant"],
        "seconds": res.seconds,
    }


def _verdict(model: Any, control: Any, dc: DiscoverConfig) -> str:
    if not any(p in MODEL_PROPOSERS for p in dc.proposers):
        return "no model-derived proposer ran (discover.proposers has no distill)"
    if model is None:
        return "the model's rules produced no tested candidate; the control decides alone"
    if control is None:
        return "no control candidate was tested, so the model's rules cannot be compared with a model-free search"

    def key(c: Any) -> tuple:
        from aio.discover.funnel import _num

        return (c.accepted, _num(c.gates.get("dsr")), _num(c.oos.get("sharpe")))

    if key(model) > key(control):
        return (f"the model's best rule ({model.id}, OOS Sharpe {_f(model.oos.get('sharpe'))}, DSR "
                f"{_f(model.gates.get('dsr'))}) beats the model-free control ({control.id}, OOS Sharpe "
                f"{_f(control.oos.get('sharpe'))}, DSR {_f(control.gates.get('dsr'))})")
    return (f"the model's rules do not beat the model-free control: best model rule {model.id} (OOS Sharpe "
            f"{_f(model.oos.get('sharpe'))}, DSR {_f(model.gates.get('dsr'))}) vs control {control.id} (OOS Sharpe "
            f"{_f(control.oos.get('sharpe'))}, DSR {_f(control.gates.get('dsr'))})")


def _f(v: Any) -> str:
    try:
        return f"{float(v):.3g}"
    except (TypeError, ValueError):
        return "n/a"


# -- outputs ----------------------------------------------------------------------------

COLUMNS = ["id", "proposer", "rule", "status", "reason", "oos_net_profit", "oos_sharpe", "dsr", "pbo", "spa_p",
           "trades", "fidelity", "screen_sharpe", "screen_trades", "holdout_net_profit", "holdout_sharpe",
           "holdout_trades", "accepted"]


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "" if not np.isfinite(v) else f"{v:.6g}"
    return str(v)


def leaderboard_rows(res: Any) -> list[dict[str, Any]]:
    rank = {"accepted": 0, "rejected": 1, "tuned": 1, "screened": 2, "duplicate": 3, "invalid": 4, "proposed": 5}
    from aio.discover.funnel import _num

    cands = sorted(res.candidates, key=lambda c: (rank.get(c.status, 9), -_num(c.gates.get("dsr")),
                                                  -_num(c.oos.get("sharpe")), -_num(c.screen.get("sharpe"))))
    return [c.row() for c in cands]


def write_outputs(run: Any, res: Any, out_dir: Path, bt: Any, lineage: dict[str, Any]) -> dict[str, str]:
    rows = leaderboard_rows(res)
    files = {}
    p = out_dir / "leaderboard.csv"
    with p.open("w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(COLUMNS + ["synthetic"])  # every row says whether it came from simulated ticks
        syn = _cell(bool(lineage["synthetic"]))
        for r in rows:
            wr.writerow([_cell(r.get(k)) for k in COLUMNS] + [syn])
    files["leaderboard_csv"] = str(p)
    run.artifacts["discover/leaderboard"] = str(p)
    p = out_dir / "leaderboard.html"
    p.write_text(_html(rows, res, lineage))
    files["leaderboard_html"] = str(p)
    run.artifacts["discover/leaderboard_html"] = str(p)
    strat_dir = out_dir / "strategies"
    for c in res.accepted:
        files.update(write_strategy(c, strat_dir, bt, run, lineage))
    return files


def write_strategy(c: Any, out_dir: Path, bt: Any, run: Any, lineage: dict[str, Any]) -> dict[str, str]:
    """<id>.yaml (runs with strategy.from=...) and <id>.pine of an accepted candidate."""
    import yaml

    from aio.appconfig import section
    from aio.pine import export_strategy

    out_dir.mkdir(parents=True, exist_ok=True)
    spec = dict(c.spec)
    spec["name"] = c.id
    spec["title"] = f"aio discovered {c.id}"
    spec["params"] = {**spec.get("params", {}), **c.params}
    y = out_dir / f"{c.id}.yaml"
    head = (f"# Discovered by aio ({c.proposer}); rule: {c.text}\n"
            f"# holdout net profit {_f((c.holdout or {}).get('net_profit'))} over {lineage['window']['holdout_start']}"
            f"..{lineage['window']['end']}; DSR {_f(c.gates.get('dsr'))}, PBO {_f(c.gates.get('pbo'))}, "
            f"SPA p {_f(c.gates.get('spa_p'))}\n")
    if lineage["synthetic"]:
        head += "# SYNTHETIC DATA: found on simulated ticks, not on a market\n"
    y.write_text(head + yaml.safe_dump(_plain(spec), sort_keys=False))
    from aio.strategy import load_spec

    text = export_strategy(load_spec(spec), spec["params"], bt, sizer=section(run.cfg, "sizer"), synthetic=run.synthetic)
    pine = out_dir / f"{c.id}.pine"
    pine.write_text(pine_note(text, [f"// Discovered strategy {c.id} ({c.proposer}): passed DSR, PBO, SPA and "
                                     f"trade-count gates; holdout net profit {_f((c.holdout or {}).get('net_profit'))}"]))
    return {f"strategy_{c.id}_yaml": str(y), f"strategy_{c.id}_pine": str(pine)}


def _plain(o: Any) -> Any:
    from aio.pipeline import dumps

    return json.loads(dumps(o))


def pine_note(text: str, lines: list[str]) -> str:
    """Comment lines at the end of the script's header (the comments before strategy()),
    so the exporter's own first lines (version, synthetic label) stay first."""
    out = text.splitlines()
    at = next((i for i, ln in enumerate(out) if not ln.startswith("//")), len(out))
    return "\n".join(out[:at] + lines + out[at:]) + ("\n" if text.endswith("\n") else "")


def _html(rows: list[dict[str, Any]], res: Any, lineage: dict[str, Any]) -> str:
    e = html.escape
    counts = " → ".join(f"{k} {v}" for k, v in res.counts.items())
    syn = ""
    if lineage["synthetic"]:
        syn = "<p class=warn>SYNTHETIC DATA" + (f" — planted edge: {e(json.dumps(lineage['plant']))}"
                                                  if lineage["plant"] else "") + "</p>"
    verdict = ("<p><b>No discovered strategy passed the funnel.</b> The run keeps the configured baseline.</p>"
               if not res.accepted else f"<p><b>{len(res.accepted)} accepted.</b> Holdout figures are the headline.</p>")
    head = "".join(f"<th>{e(k)}</th>" for k in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{e(_cell(r.get(k)))}</td>" for k in COLUMNS) + "</tr>" for r in rows)
    return (f"<!doctype html><meta charset=utf-8><title>aio discovery leaderboard</title>"
            f"<style>body{{font-family:sans-serif}}td,th{{border:1px solid #ccc;padding:2px 6px;font-size:12px}}"
            f"table{{border-collapse:collapse}}.warn{{color:#b00;font-weight:bold}}</style>"
            f"<h1>Discovery leaderboard</h1>{syn}{verdict}<p>Funnel: {e(counts)}</p>"
            f"<p>Window {e(str(lineage['window']))}; ledger {e(str(res.ledger))}</p>"
            f"<table><tr>{head}</tr>{body}</table>")


# -- after export: the Pine header says what strategy.pine is -----------------------------


def stage_discover_export(run: Any) -> None:
    d = run.metrics.get("discover")
    pine = run.artifacts.get("strategy")
    if not d or not pine or not Path(pine).is_file():
        return
    p = Path(pine)
    if d.get("adopted"):
        a = d["adopted"]
        h = (d.get("headline") or {}).get("metrics") or {}
        lines = [f"// Discovered by aio: {a['id']} ({a['proposer']}), accepted by the funnel "
                 f"(DSR, PBO, SPA, trades); holdout net profit {_f(h.get('net_profit'))}"]
    else:
        name = getattr(run.strategy, "name", "baseline")
        lines = [f"// No discovered strategy passed the funnel ({d['funnel'].get('tested', 0)} tested of "
                 f"{d['funnel'].get('proposed', 0)} proposed); this is the configured baseline {name}",
                 "// (see discover/leaderboard.html for why each candidate failed)"]
    p.write_text(pine_note(p.read_text(), lines))


# -- task=strategies ----------------------------------------------------------------------


@dataclass
class StrategiesQuery:
    accepted: bool | None = None
    proposer: str | None = None
    symbol: str | None = None
    id: str | None = None
    export: str | None = None  # folder: write <id>.yaml + <id>.pine of the selected rows
    limit: int = param(50, ge=1)


def stage_strategies(run: Any) -> None:
    from aio.appconfig import section
    from aio.discover.library import rows
    from aio.models.stages import store_config

    q = build(StrategiesQuery, (section(run.cfg, "discover") or {}).get("query") or {}, "discover.query",
              ignore=())
    lib = _library(run)
    if lib is None:
        raise ConfigError("task=strategies needs a store section (store=lancedb, store.path=...)")
    out = []
    for r in rows(lib):
        d = r["discover"] or {}
        if q.accepted is not None and bool(d.get("accepted")) != q.accepted:
            continue
        if q.proposer and d.get("proposer") != q.proposer:
            continue
        if q.symbol and r.get("symbol") != q.symbol:
            continue
        if q.id and not (r["strategy_id"].startswith(q.id) or r["name"].startswith(q.id)):
            continue
        out.append({"strategy_id": r["strategy_id"], "id": r["name"], "proposer": d.get("proposer"),
                    "accepted": d.get("accepted"), "rule": d.get("rule"),
                    "oos_sharpe": (d.get("oos") or {}).get("sharpe"), "dsr": (d.get("gates") or {}).get("dsr"),
                    "pbo": (d.get("gates") or {}).get("pbo"), "spa_p": (d.get("gates") or {}).get("spa_p"),
                    "holdout_net_profit": (d.get("holdout") or {}).get("net_profit"),
                    "symbol": r.get("symbol"), "teacher_model_id": d.get("teacher_model_id"),
                    "window": (d.get("window") or {}).get("start"), "synthetic": bool(d.get("synthetic")),
                    "_row": r})
    out.sort(key=lambda x: (not x["accepted"], -(x["dsr"] or -1e9)))
    out = out[: q.limit]
    files = {}
    if q.export:
        from aio.pipeline import backtest_config
        from aio.discover.library import spec_of
        from aio.pine import export_strategy
        from aio.strategy import load_spec
        import yaml

        exp = Path(q.export)
        exp.mkdir(parents=True, exist_ok=True)
        bt = backtest_config(run)
        for x in out:
            spec = spec_of(x["_row"])
            (exp / f"{x['id']}.yaml").write_text(yaml.safe_dump(_plain(spec), sort_keys=False))
            (exp / f"{x['id']}.pine").write_text(export_strategy(load_spec(spec), spec["params"], bt))
            files[x["id"]] = str(exp / f"{x['id']}.yaml")
    listing = [{k: v for k, v in x.items() if k != "_row"} for x in out]
    p = Path(run.run_dir) / "strategies.csv"
    with p.open("w", newline="") as fh:
        cols = ["id", "strategy_id", "proposer", "accepted", "rule", "oos_sharpe", "dsr", "pbo", "spa_p",
                "holdout_net_profit", "symbol", "teacher_model_id", "window", "synthetic"]
        wr = csv.writer(fh)
        wr.writerow(cols)
        for x in listing:
            wr.writerow([_cell(x.get(k)) for k in cols])
    run.artifacts["strategies"] = str(p)
    run.metrics["strategies"] = {"path": str(lib.path), "count": len(listing), "rows": listing, "exported": files,
                                 "synthetic": any(x["synthetic"] for x in listing)}
    for x in listing:
        print(f"{x['id']}  {'ACCEPTED' if x['accepted'] else 'rejected'}  {x['proposer']}  dsr={_f(x['dsr'])}  "
              f"holdout={_f(x['holdout_net_profit'])}  {x['rule']}")
