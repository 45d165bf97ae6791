"""LoRA training pairs for a self-improving strategy VLM: chart window -> accepted strategy.

``task=train`` with ``discover.vlm.pairs.enabled=true`` (and a store) writes, for every
accepted strategy in the strategy library whose discovery window lies in the run's
bars, one pair into ``<run>/vlm_pairs/``:

- ``images/<strategy id>_x<scale>.png``: the proposal window's charts at the vlm
  proposer's scales (exactly what the proposer shows the model);
- a line of ``pairs.jsonl``: ``{"id", "images", "prompt", "target", "strategy_id",
  "proposer", "window", "synthetic"}``, where ``prompt`` is the proposer's round-1 prompt
  (indicator summary, no leaderboard) and ``target`` the strategy as one line of the
  proposal language (:mod:`aio.vlm.strategy_grammar`), so fine-tuning and
  constrained decoding agree token for token.

Strategies the language cannot express (distilled ``close - x <= level`` rules, shipped
strategies with other exits) are counted and skipped. The training itself runs on a
GPU with ``aio.vlm.train`` (not here). Synthetic data is labelled in every line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from aio.config import build, param
from aio.errors import ConfigError

log = structlog.get_logger(__name__)


@dataclass
class PairsConfig:
    """``discover.vlm.pairs``."""

    enabled: bool = param(False, help="task=train writes LoRA training pairs from the strategy library")
    max_pairs: int = param(1000, ge=1)
    only_accepted: bool = param(True, help="only strategies a discovery accepted")


def spec_to_genome(spec: Any, g: Any) -> Any | None:
    """A strategy as a grammar genome, or None when the proposal language cannot say it."""
    from aio.discover.grammar import Atom, Block, Genome, Term, _flatten
    from aio.strategy.expr import Call, History, Name, Num

    p = dict(spec.params)
    blocks = {b.label: b for b in g.blocks}

    def term(node: Any) -> Term | None:
        if not isinstance(node, Name):
            return None
        key = node.key
        if key in ("open", "high", "low", "close", "hl2", "hlc3", "ohlc4"):
            return Term(Block(None, field=key))
        base, _, attr = key.partition(".")
        b = spec.indicators.get(base)
        if b is None or b.fn is None:
            return None
        out = attr or b.output
        label = b.fn + (f".{out}" if out else "")
        blk = blocks.get(label)
        if blk is None:
            return None
        length = None
        if blk.length_key:
            v = b.params.get(blk.length_key)
            length = int(p.get(v, v)) if v is not None else None
            if length is None or length not in g.cfg.lengths:
                return None
        elif b.params:
            return None
        return Term(blk, length)

    def level(node: Any) -> float | None:
        if isinstance(node, Num):
            return float(node.value)
        if isinstance(node, Name) and node.key in p and isinstance(p[node.key], (int, float)):
            return float(p[node.key])
        return None

    def atom(node: Any) -> Atom | None:
        from aio.strategy.expr import Binary

        if isinstance(node, Call) and node.fn in ("crossover", "crossunder") and len(node.args) == 2:
            a, b = term(node.args[0]), node.args[1]
            op = "xup" if node.fn == "crossover" else "xdn"
        elif isinstance(node, Binary) and node.op in (">", "<"):
            if isinstance(node.right, History) and isinstance(node.left, Name):
                a = term(node.left)
                if a is None or not (isinstance(node.right.operand, Name) and node.right.operand.key == node.left.key):
                    return None
                if node.right.offset not in g.cfg.lags:
                    return None
                return Atom("rise" if node.op == ">" else "fall", a, lag=int(node.right.offset))
            a, b = term(node.left), node.right
            op = "gt" if node.op == ">" else "lt"
        else:
            return None
        if a is None:
            return None
        tb = term(b)
        if tb is not None:
            scales = {a.block.scale if a.block.fn else "price", tb.block.scale if tb.block.fn else "price"}
            return Atom(op, a, tb) if scales == {"price"} else None
        lv = level(b)
        if lv is None or a.block.fn is None or a.block.scale != "level":
            return None
        return Atom(op, a, None, level=lv)

    entry_rules = [r for r in spec.rules if r.action == "entry"]
    close_rules = [r for r in spec.rules if r.action == "close"]
    if len(entry_rules) != 1 or len(close_rules) > 1 or entry_rules[0].type != "market":
        return None
    er = entry_rules[0]
    entry = [atom(x) for x in _flatten(spec.ast(f"rule:{er.id}:when"), "and")]
    close = [atom(x) for x in _flatten(spec.ast(f"rule:{close_rules[0].id}:when"), "and")] if close_rules else []
    if any(a is None for a in entry + close) or len(entry) > g.cfg.max_entry_conditions \
            or len(close) > g.cfg.max_close_conditions:
        return None
    ex = spec.exit

    def val(v: Any) -> float | None:
        v = p.get(v, v) if isinstance(v, str) else v
        return float(v) if isinstance(v, (int, float)) else None

    if ex.stop_atr is not None and ex.take_atr is not None:
        bracket, stop, take = "atr", val(ex.stop_atr), val(ex.take_atr)
    elif ex.stop_pct is not None and ex.take_pct is not None:
        bracket, stop, take = "pct", val(ex.stop_pct), val(ex.take_pct)
    else:
        return None
    if stop is None or take is None or bracket not in g.cfg.brackets or any(
            getattr(ex, k) is not None for k in ex.PRICE_KEYS):
        return None
    return Genome(er.direction, tuple(entry), tuple(close), bracket, stop, take)


def write_pairs(lib: Any, frame: Any, out_dir: Path, dc: Any, symbol: str, timeframe: str,
                synthetic: bool) -> dict[str, Any]:
    """Pairs of every usable library strategy; returns counts."""
    from aio.discover.grammar import Grammar
    from aio.discover.library import rows, spec_of
    from aio.discover.proposers.vlm import USER, VLMProposerConfig, charts, summary
    from aio.strategy import load_spec
    from aio.strategy.rules import price_env
    from aio.vlm.strategy_grammar import StrategyLanguage, parse_proposal, render_proposal
    from PIL import Image

    vc = build(VLMProposerConfig, {k: v for k, v in (dc.vlm or {}).items()}, "discover.vlm")
    pc = build(PairsConfig, vc.pairs, "discover.vlm.pairs")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    ts = np.datetime_as_string(frame.get_column("ts_event").to_numpy().astype(np.int64).astype("datetime64[ns]"), unit="s")
    index = {t + "Z": i for i, t in enumerate(ts)}  # the lineage's window start (aio.discover.stage._iso)
    arrays = {c: frame.get_column(c).to_numpy() for c in ("open", "high", "low", "close", "volume")}
    counts = {"library_rows": 0, "pairs": 0, "not_accepted": 0, "outside_bars": 0, "not_expressible": 0}
    lines = []
    for r in rows(lib):
        d = r.get("discover")
        counts["library_rows"] += 1
        if d is None or (pc.only_accepted and not d.get("accepted")):
            counts["not_accepted"] += 1
            continue
        w = d.get("window") or {}
        start = index.get(str(w.get("start")))
        if start is None or start + int(w.get("bars", 0)) > frame.height or (r.get("symbol") not in (None, symbol)):
            counts["outside_bars"] += 1
            continue
        pe = start + int(w["proposal_end"])
        env = price_env({k: v[start:pe] for k, v in arrays.items()})
        g = Grammar(dc.grammar, {k: v[start:pe] for k, v in arrays.items()})
        spec = load_spec(spec_of(r))
        genome = spec_to_genome(spec, g)
        if genome is None:
            counts["not_expressible"] += 1
            continue
        lang = StrategyLanguage.from_grammar(g)
        target = render_proposal(genome, lang)
        parse_proposal(target, g)  # the target is a sentence of the language (else a bug here)
        imgs = []
        for k, im in zip(vc.scales, charts(env, pe - start, vc)):
            p = out_dir / "images" / f"{r['strategy_id']}_x{k}.png"
            Image.fromarray(im).save(p)
            imgs.append(str(p.relative_to(out_dir)))
        prompt = USER.format(symbol=symbol, timeframe=timeframe, bars=vc.chart_bars,
                             scales=", ".join(str(s) for s in vc.scales), summary=summary(g, pe - start, vc.summary_series),
                             leaderboard="")
        lines.append({"id": r["strategy_id"], "images": imgs, "prompt": prompt, "target": target,
                      "strategy_id": r["strategy_id"], "proposer": d.get("proposer"), "window": w,
                      "synthetic": bool(synthetic or d.get("synthetic"))})
        counts["pairs"] += 1
        if counts["pairs"] >= pc.max_pairs:
            break
    with (out_dir / "pairs.jsonl").open("w") as fh:
        for ln in lines:
            fh.write(json.dumps(ln, sort_keys=True) + "\n")
    log.info("vlm training pairs", path=str(out_dir), **counts)
    return {"path": str(out_dir / "pairs.jsonl"), **counts}


def stage_vlm_pairs(run: Any) -> None:
    from aio.discover.stage import _library, discover_config

    dc = discover_config(run.cfg)
    pairs = (dc.vlm or {}).get("pairs") or {}
    if not pairs.get("enabled"):
        return
    lib = _library(run)
    if lib is None:
        raise ConfigError("discover.vlm.pairs.enabled needs a store section (store=lancedb, store.path=...)")
    res = write_pairs(lib, run.bars.frame, Path(run.run_dir) / "vlm_pairs", dc, str(run.bars.symbol),
                      str(run.bars.timeframe), bool(run.synthetic))
    run.metrics["vlm_pairs"] = res
    run.artifacts["vlm_pairs"] = res["path"]
    if not res["pairs"]:
        log.warning("no vlm training pairs", hint="the library has no accepted strategy the proposal language can "
                    "express on these bars; run task=discover or task=populate first", **res)


__all__ = ["PairsConfig", "spec_to_genome", "stage_vlm_pairs", "write_pairs"]
