"""The vision-language model writes candidate strategies in aio's rule language.

Each round the model (``model=minicpm_v`` / ``hf_vlm``; the run's model section, or
``discover.vlm.model`` overrides) sees

- the proposal window's last bars as candle charts at two or three scales
  (``scales``: 1 = one candle per bar, 4 = one per four bars, ...),
- a compact indicator summary of that window (quantiles of the level-like series at
  their default lengths, the close against the price-like ones),
- from round 2 on, the leaderboard so far: the best and the worst of its earlier
  proposals with the screen's figures (proposal-window Sharpe, trades, net profit: the
  numbers the funnel's screen records), as RD-Agent and FunSearch feed results back,

and writes ``per_round`` proposals by sampling under grammar-constrained decoding
(:mod:`aio.vlm.strategy_grammar`: every line parses into a grammar genome and a valid
strategy). Proposals are deduplicated by canonical rule text (the same rule written
twice is one candidate). Every proposal goes to the funnel like any other candidate,
so the ledger, and with it the deflated Sharpe, counts the VLM's tries.

Inputs read only bars before ``proposal_end`` (charts, summary, screen), never the
walk-forward OOS bars nor the holdout. Sampling is seeded per round from the
discovery seed: the same seed gives the same proposals.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from aio.config import param
from aio.discover.candidate import Candidate
from aio.errors import ConfigError

log = structlog.get_logger(__name__)

VLM_MODELS = ("minicpm_v", "hf_vlm")

SYSTEM = ("You are a quantitative FX researcher. You look at charts of one market and write one trading "
          "strategy per answer in the given rule language, nothing else.")
USER = (
    "{symbol} {timeframe}: the charts show the last {bars} candles at scales {scales} bars per candle. "
    "Indicator summary of the window:\n{summary}\n"
    "Write one strategy as: <long|short> when <condition>[ and <condition>][; close when <condition>]; "
    "stop <x> ATR, take <y> ATR (or stop <x>%, take <y>%). Conditions: A crosses above|below B, A > B, A < B, "
    "A rises|falls over K bars; price series compare with price series, oscillators with numbers.\n"
    "{leaderboard}"
)


@dataclass
class VLMProposerConfig:
    """``discover.vlm`` (and ``discover.options.vlm``): the VLM proposer."""

    rounds: int = param(3, ge=1, le=1000, help="rounds of proposals; from round 2 the prompt has the leaderboard")
    per_round: int = param(8, ge=1, le=1024, help="proposals sampled per round")
    max_retries: int = param(2, ge=0, le=100, help="extra samplings of a round whose proposals were all duplicates")
    scales: list[int] = field(default_factory=lambda: [1, 4, 16])  # bars per candle of each chart
    chart_bars: int = param(64, ge=8, le=1024, help="candles per chart")
    chart_px: int = param(224, ge=32, le=2048, help="chart width and height in pixels")
    summary_series: int = param(8, ge=0, le=200, help="series in the indicator summary (level-like first)")
    leaderboard: int = param(3, ge=1, le=50, help="best and worst proposals shown from round 2 on")
    temperature: float = param(1.0, gt=0.0, le=10.0, help="sampling temperature (proposals are sampled)")
    model: dict[str, Any] = field(default_factory=dict)  # overrides of the run's model section (name, name_or_path...)
    pairs: dict[str, Any] = field(default_factory=lambda: {"enabled": False, "max_pairs": 1000})  # task=train: LoRA
    # training pairs (aio.vlm.strategy_pairs.PairsConfig; the YAML test keeps these two equal)

    def __post_init__(self) -> None:
        if not 1 <= len(self.scales) <= 4 or any(int(s) < 1 for s in self.scales) or len(set(self.scales)) != len(self.scales):
            raise ConfigError(f"config key discover.vlm.scales={self.scales!r} must be 1 to 4 distinct positive bars-per-candle "
                              "values, e.g. [1, 4, 16]")


def model_section(ctx_model: dict[str, Any] | None, over: dict[str, Any]) -> dict[str, Any]:
    sec = {**(ctx_model or {}), **(over or {})}
    name = sec.get("name")
    if name not in VLM_MODELS:
        raise ConfigError(f"discover.proposers has vlm, which needs a vision-language model: model=minicpm_v or "
                          f"model=hf_vlm (or discover.vlm.model.name), got model.name={name!r}")
    return sec


def load_vlm(sec: dict[str, Any]) -> Any:
    """A :class:`aio.vlm.model.ChartVLM` from a model section (the same loading as the model plugins)."""
    from aio.config import build
    from aio.vlm.config import HFVLMConfig, MiniCPMVConfig
    from aio.vlm.model import ChartVLM
    from aio.vlm.schema import AnswerSpec

    cls = MiniCPMVConfig if sec["name"] == "minicpm_v" else HFVLMConfig
    cfg = build(cls, {k: v for k, v in sec.items() if k != "_target_"}, "model")
    return ChartVLM(cfg, sec["name"], AnswerSpec.from_config(cfg.answer, [1]))


# -- inputs (bars before proposal_end only) ---------------------------------------------


def aggregate(env: dict[str, np.ndarray], end: int, k: int, n: int) -> dict[str, np.ndarray] | None:
    """``n`` candles of ``k`` bars each ending at bar ``end - 1`` (fewer when the window is short)."""
    m = min(n, end // k)
    if m < 2:
        return None
    s = end - m * k
    sl = lambda a: a[s:end].reshape(m, k)  # noqa: E731
    return {"open": sl(env["open"])[:, 0], "high": sl(env["high"]).max(1), "low": sl(env["low"]).min(1),
            "close": sl(env["close"])[:, -1], "volume": sl(env.get("volume", np.zeros_like(env["close"]))).sum(1)}


def charts(env: dict[str, np.ndarray], end: int, cfg: VLMProposerConfig) -> list[np.ndarray]:
    """One (H, W, 3) uint8 candle chart per scale of the bars before ``end``."""
    from aio.render import CandleRenderer, CandlesConfig, ChartBatch

    out = []
    for k in cfg.scales:
        agg = aggregate(env, end, int(k), cfg.chart_bars)
        if agg is None:
            continue
        n = len(agg["close"])
        r = CandleRenderer(CandlesConfig(width=max(cfg.chart_px, n), height=cfg.chart_px, bars=n, volume=False,
                                         overlays=[], workers=1))
        batch = ChartBatch(*(agg[c][None, :] for c in ("open", "high", "low", "close", "volume")))
        out.append(r.render(batch)[0])
    if not out:
        raise ConfigError(f"the proposal window has {end} bars, too few for a chart; lower discover.vlm.chart_bars")
    return out


def summary(g: Any, end: int, limit: int) -> str:
    """Quantiles (10/50/90%) and the last value of up to ``limit`` series at default lengths."""
    from aio.discover.grammar import Term

    lines = []
    close = g.env["close"][:end]
    for b in (g.level_blocks + g.price_blocks)[:limit]:
        t = Term(b, g.default_length(b))
        x = g.series(t)[:end]
        x = x[np.isfinite(x)]
        if not len(x):
            continue
        name = b.label + (f"({t.length})" if t.length else "")
        if b.scale == "level":
            q = np.quantile(x, [0.1, 0.5, 0.9])
            lines.append(f"{name}: p10 {q[0]:.4g} p50 {q[1]:.4g} p90 {q[2]:.4g} last {x[-1]:.4g}")
        else:
            above = float(np.mean(close[-len(x):] > x)) * 100
            lines.append(f"{name}: close above it {above:.0f}% of bars, last {x[-1]:.5g} vs close {close[-1]:.5g}")
    return "\n".join(lines)


def leaderboard_text(rows: list[dict[str, Any]], k: int) -> str:
    if not rows:
        return ""

    def fmt(r: dict[str, Any]) -> str:
        s = r["sharpe"]
        return (f"- {r['text']} | screen Sharpe {'n/a' if s is None else f'{s:.3g}'}, trades {r['trades']}, "
                f"net {r['net']:.4g}")

    ranked = sorted(rows, key=lambda r: (r["sharpe"] is None, -(r["sharpe"] if r["sharpe"] is not None else 0)))
    best = ranked[:k]
    worst = [r for r in ranked[::-1][:k] if r not in best]
    out = ["Leaderboard of your earlier proposals (proposal window, after costs):", "Best:"] + [fmt(r) for r in best]
    if worst:
        out += ["Worst:"] + [fmt(r) for r in worst]
    out.append("Write a new strategy that differs from all of these.")
    return "\n".join(out) + "\n"


# -- generation ---------------------------------------------------------------------------


def generate(vlm: Any, images: list[np.ndarray], text: str, grammar: str, n: int, seed: int,
             temperature: float, max_new: int) -> tuple[list[str], list[int]]:
    """``n`` sampled, grammar-constrained answers to one multi-image prompt; (texts, token counts)."""
    import torch
    from transformers import LogitsProcessorList

    from aio.vlm.constrained import GrammarLogitsProcessor

    pil = [vlm._images([im])[0] for im in images]
    msgs = [{"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
            {"role": "user", "content": [*({"type": "image"} for _ in pil), {"type": "text", "text": text}]}]
    proc = vlm.processor
    prompt = proc.apply_chat_template([msgs], add_generation_prompt=True, tokenize=False)[0] + vlm.parts.lead
    tok = proc.tokenizer
    side = tok.padding_side
    tok.padding_side = "left"
    try:
        enc = dict(proc(text=[prompt] * n, images=[list(pil) for _ in range(n)], return_tensors="pt", padding=True))
    finally:
        tok.padding_side = side
    enc = vlm._to_device(enc)
    procs = LogitsProcessorList([GrammarLogitsProcessor(vlm.grammar_tokenizer, grammar, n)])
    torch.manual_seed(seed)
    vlm.net.eval()
    with torch.no_grad():
        out = vlm.net.generate(**enc, max_new_tokens=max_new, do_sample=True, temperature=temperature, top_k=0,
                               eos_token_id=vlm.end_ids, pad_token_id=tok.pad_token_id, logits_processor=procs)
    new = out[:, enc["input_ids"].shape[1]:]
    ends = set(vlm.end_ids) | ({tok.pad_token_id} if tok.pad_token_id is not None else set())
    counts = []
    for row in new.tolist():
        c = 0
        for t in row:
            if t in ends:
                break
            c += 1
        counts.append(c)
    return [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)], counts


class Collector:
    """Proposal lines -> candidates: parsed, validated, deduplicated by canonical rule text,
    screened on the proposal window."""

    def __init__(self, g: Any) -> None:
        self.g = g
        self.seen: dict[str, str] = {}  # canonical text -> first proposal line
        self.stats: dict[str, Any] = {"generated": 0, "parsed": 0, "invalid": 0, "duplicates": 0}
        self.n = 0

    def add(self, line: str, ctx: Any, meta: dict[str, Any]) -> Candidate | None:
        from aio.discover.grammar import canonical_text, fast_spec
        from aio.vlm.strategy_grammar import ProposalError, parse_proposal

        self.stats["generated"] += 1
        try:
            genome = parse_proposal(line, self.g)
            spec = self.g.to_spec(genome, name=f"vlm{self.n}")
            parsed = fast_spec(spec)
        except (ProposalError, ConfigError) as exc:
            self.stats["invalid"] += 1
            ctx.notes.append(f"vlm: an invalid proposal ({exc}): {line[:160]!r}")
            return None
        self.stats["parsed"] += 1
        key = canonical_text(parsed)
        if key in self.seen:
            self.stats["duplicates"] += 1
            return None
        self.seen[key] = line
        self.n += 1
        fig = VLMProposer._screen(ctx, parsed)
        return Candidate("vlm", spec, {"proposal": line, **meta, "screen_sharpe": fig["sharpe"],
                                       "screen_trades": fig["trades"], "screen_net": fig["net"]}, parsed=parsed)


class VLMProposer:
    Config = VLMProposerConfig
    name = "vlm"

    def __init__(self, cfg: VLMProposerConfig | None = None, vlm: Any = None) -> None:
        self.cfg = cfg or VLMProposerConfig()
        self.vlm = vlm  # a loaded ChartVLM (tests, benchmarks); else loaded from the model section
        self.prompts: list[str] = []  # the text prompt of each round (reports, tests)
        self.stats: dict[str, Any] = {}

    def propose(self, ctx: Any, budget: int) -> list[Candidate]:
        from aio import progress
        from aio.vlm.constrained import lark_to_grammar
        from aio.vlm.strategy_grammar import StrategyLanguage, lark_grammar

        c = self.cfg
        if self.vlm is None:
            self.vlm = load_vlm(model_section(getattr(ctx, "model_cfg", None), c.model))
        g = ctx.grammar
        lang = StrategyLanguage.from_grammar(g)
        grammar = lark_to_grammar(lark_grammar(lang))
        max_new = lang.max_chars() + 8  # a token is at least one character
        end = ctx.proposal_end
        env = {k: v[:end] for k, v in ctx.evaluator_env().items()}
        images = charts(env, end, c)
        summ = summary(g, end, c.summary_series)
        seed0 = int(ctx.rng.integers(1 << 31))
        cap = min(budget, c.rounds * c.per_round) if budget else c.rounds * c.per_round
        out: list[Candidate] = []
        rows: list[dict[str, Any]] = []
        col = Collector(g)
        st = col.stats
        st.update(tokens=0, seconds=0.0, rounds=0)
        self.prompts = []
        for rnd in progress.track(range(c.rounds), "vlm proposal rounds", unit="round"):
            if len(out) >= cap:
                break
            text = USER.format(symbol=getattr(ctx, "symbol", "") or "EURUSD", timeframe=getattr(ctx, "timeframe", "") or "1m",
                               bars=c.chart_bars, scales=", ".join(str(s) for s in c.scales), summary=summ,
                               leaderboard=leaderboard_text(rows, c.leaderboard))
            self.prompts.append(text)
            st["rounds"] += 1
            new_this_round = 0
            for attempt in range(c.max_retries + 1):
                n = min(c.per_round, cap - len(out))
                if n <= 0:
                    break
                seed = seed0 + 7919 * rnd + 104729 * attempt
                t0 = time.perf_counter()
                texts, toks = generate(self.vlm, images, text, grammar, n, seed, c.temperature, max_new)
                st["seconds"] += time.perf_counter() - t0
                st["tokens"] += int(sum(toks))
                for line, ntok in zip(texts, toks):
                    cand = col.add(line, ctx, {"round": rnd + 1, "tokens": ntok, "model_id": self.vlm.model_id,
                                               "prompt_sha": hashlib.sha256(text.encode()).hexdigest()[:12]})
                    if cand is None:
                        continue
                    rows.append({"text": line, "sharpe": cand.meta["screen_sharpe"],
                                 "trades": cand.meta["screen_trades"], "net": cand.meta["screen_net"]})
                    out.append(cand)
                    new_this_round += 1
                if new_this_round:
                    break
        st["seconds"] = round(st["seconds"], 3)
        self.stats = st
        ctx.notes.append(f"vlm: {st['rounds']} rounds, {st['generated']} proposals written, {len(out)} distinct "
                         f"({st['duplicates']} duplicates, {st['invalid']} invalid), {st['tokens']} tokens")
        log.info("vlm proposals", **st, distinct=len(out))
        return out

    @staticmethod
    def _screen(ctx: Any, spec: Any) -> dict[str, Any]:
        """The screen's figures on the proposal window (what the funnel records first)."""
        e = ctx.evaluator.run(spec, None, start=0, end=ctx.proposal_end, metrics=["sharpe", "trade_count", "net_profit"])
        s = e.metrics.get("sharpe")
        s = float(s) if s is not None and np.isfinite(s) else None
        return {"sharpe": s, "trades": int(e.metrics.get("trade_count") or 0),
                "net": float(e.metrics.get("net_profit") or 0.0)}
