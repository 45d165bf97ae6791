"""VLM throughput on CPU with the tiny random checkpoints (MiniCPM-V 4.6 and Idefics3 layouts).

Measures, per checkpoint: charts analysed per second (constrained JSON generation),
direction scoring and embedding throughput (what a walk-forward run uses per row),
and LoRA training steps per second. There is no peer library doing the same job, so
``ratio`` compares aio's constrained decoding with plain (unconstrained) ``generate``
of the same model on the same charts: unconstrained seconds per generated token /
constrained seconds per generated token (1.0: the grammar costs nothing; 0.8: it
adds 25% per token). Every constrained answer is checked to parse against the schema.

    python benchmarks/vlm.py [--charts 16] [--steps 4]

The vlm proposer (aio/discover/proposers/vlm.py) is measured too: strategy proposals
per second and generated tokens per proposal, writing rules under the strategy grammar
from charts of synthetic bars (``--proposals`` per model, in rounds of 4); every
proposal is checked to parse and validate as a strategy.

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aio.config import build  # noqa: E402
from aio.vlm.config import HFVLMConfig, MiniCPMVConfig  # noqa: E402
from aio.vlm.model import ChartVLM  # noqa: E402
from aio.vlm.prompt import encode_prompts, prompt_texts  # noqa: E402
from aio.vlm.schema import Answer, AnswerSpec, max_answer_chars, parse_answer, render_answer  # noqa: E402
from aio.vlm.tiny import build_tiny  # noqa: E402
from aio.vlm.train import fit_adapter  # noqa: E402

FAMILIES = {"minicpm_v": ("minicpm_v", MiniCPMVConfig), "idefics3": ("hf_vlm", HFVLMConfig)}


def charts(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(rng.random((224, 224, 3)) * 255).astype(np.uint8) for _ in range(n)]


def gen_tokens(vlm: ChartVLM, imgs: list, constrained: bool) -> tuple[float, int, list[str]]:
    """(seconds, generated non-pad tokens, texts) for one pass over ``imgs``."""
    from transformers import LogitsProcessorList

    from aio.vlm.constrained import GrammarLogitsProcessor

    tok = vlm.processor.tokenizer
    bs = vlm.cfg.generation.batch_size
    max_new = max_answer_chars(vlm.spec) + 2
    t0 = time.perf_counter()
    n_tok, texts = 0, []
    with torch.no_grad():
        for s in range(0, len(imgs), bs):
            part = vlm._images(imgs[s:s + bs])
            enc = vlm._to_device(encode_prompts(vlm.processor, part, prompt_texts(
                vlm.processor, vlm.cfg.prompt, [vlm.fill()] * len(part), vlm.parts.lead)))
            procs = LogitsProcessorList([GrammarLogitsProcessor(vlm.grammar_tokenizer, vlm.grammar, len(part))]) \
                if constrained else None
            out = vlm.net.generate(**enc, max_new_tokens=max_new, do_sample=False, eos_token_id=vlm.end_ids,
                                   pad_token_id=tok.pad_token_id, logits_processor=procs)
            new = out[:, enc["input_ids"].shape[1]:]
            n_tok += int((new != tok.pad_token_id).sum())
            texts += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
    return time.perf_counter() - t0, n_tok, texts


def bench(kind: str, root: Path, n: int, steps: int) -> dict:
    family, cls = FAMILIES[kind]
    ckpt = build_tiny(kind, root / kind)
    cfg = build(cls, {"name_or_path": str(ckpt), "finetune": "lora",
                      "train": {"batch_size": 2, "grad_accum": 1}}, "model")
    spec = AnswerSpec.from_config(cfg.answer, [5, 15, 60])
    vlm = ChartVLM(cfg, family, spec, training=True)
    imgs = charts(n)
    gen_tokens(vlm, imgs[:2], True)  # warm-up (grammar tokenizer, first-call overheads)
    gen_tokens(vlm, imgs[:2], False)
    tc, nc, texts = gen_tokens(vlm, imgs, True)
    answers = [parse_answer(t, spec) for t in texts]  # raises if any answer does not parse
    tu, nu, _ = gen_tokens(vlm, imgs, False)
    t0 = time.perf_counter()
    vlm.direction_logits(imgs)
    t_score = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb = vlm.embed(imgs)
    t_emb = time.perf_counter() - t0
    vlm.enable_lora()
    target = [render_answer(Answer("up", 0.7, "uptrend", 15, "trending regime, rising closes"), spec)] * (2 * (steps + 1))
    fit_adapter(vlm, imgs[:2], [vlm.fill()] * 2, target[:2], cfg.train, max_steps=1)  # warm-up step
    t0 = time.perf_counter()
    stats = fit_adapter(vlm, (imgs * 4)[: 2 * steps], [vlm.fill()] * (2 * steps), target[: 2 * steps], cfg.train,
                        max_steps=steps)
    t_train = time.perf_counter() - t0
    return {
        "charts": n, "valid_answers": len(answers), "embedding_dim": int(emb.shape[1]),
        "analyze_charts_per_s": round(n / tc, 2), "unconstrained_charts_per_s": round(n / tu, 2),
        "constrained_tokens": nc, "unconstrained_tokens": nu,
        "constrained_s_per_token": round(tc / max(nc, 1), 6), "unconstrained_s_per_token": round(tu / max(nu, 1), 6),
        "score_charts_per_s": round(n / t_score, 2), "embed_charts_per_s": round(n / t_emb, 2),
        "lora_steps_per_s": round(stats["steps"] / t_train, 3), "lora_batch": 2,
        "ratio": round((tu / max(nu, 1)) / (tc / max(nc, 1)), 3),
    }


def market_context(seed: int = 3):
    """A proposer context on two days of synthetic bars (labelled synthetic)."""
    import yaml

    from aio.appconfig import REPO
    from aio.backtest import BacktestConfig
    from aio.bars import TimeBars, TimeBarsConfig
    from aio.data.synthetic import SyntheticDataConfig, SyntheticSource
    from aio.discover.funnel import evaluator
    from aio.discover.grammar import Grammar, GrammarConfig
    from aio.discover.proposers import ProposeContext
    from aio.strategy.rules import price_env

    sec = yaml.safe_load((REPO / "conf" / "data" / "synthetic.yaml").read_text())
    sec.update(seed=seed, start="2024-03-04", end="2024-03-06")
    frame = TimeBars(TimeBarsConfig()).build(SyntheticSource(build(SyntheticDataConfig, sec, "data")).load()).frame
    bt = build(BacktestConfig, yaml.safe_load((REPO / "conf" / "backtest" / "default.yaml").read_text()), "backtest")
    arrays = {c: frame.get_column(c).to_numpy() for c in ("open", "high", "low", "close", "volume")}
    pe = frame.height // 2
    g = Grammar(GrammarConfig(), {k: v[:pe] for k, v in arrays.items()})
    return lambda: ProposeContext(grammar=g, evaluator=evaluator(frame, bt, "EURUSD", "1m"), proposal_end=pe,
                                  discovery_end=frame.height, rng=np.random.default_rng(0), env=price_env(arrays),
                                  symbol="EURUSD", timeframe="1m")


def bench_proposer(kind: str, root: Path, n: int, make_ctx) -> dict:
    from aio.discover.grammar import fast_spec
    from aio.discover.proposers.vlm import VLMProposer, VLMProposerConfig, load_vlm

    family, _ = FAMILIES[kind]
    vlm = load_vlm({"name": family, "name_or_path": str(root / kind)})
    cfg = VLMProposerConfig(rounds=max(1, n // 4), per_round=4, scales=[1, 4, 16], chart_bars=64, chart_px=224)
    VLMProposer(VLMProposerConfig(rounds=1, per_round=1), vlm=vlm).propose(make_ctx(), 1)  # warm-up
    p = VLMProposer(cfg, vlm=vlm)
    t0 = time.perf_counter()
    cands = p.propose(make_ctx(), 10_000)
    wall = time.perf_counter() - t0
    for c in cands:
        fast_spec(c.spec)  # raises if a proposal does not validate
    st = p.stats
    return {"proposals": st["generated"], "parsed": st["parsed"], "invalid": st["invalid"], "distinct": len(cands),
            "proposals_per_s": round(st["generated"] / wall, 3),
            "generate_proposals_per_s": round(st["generated"] / max(st["seconds"], 1e-9), 3),
            "tokens_per_proposal": round(st["tokens"] / max(st["generated"], 1), 1),
            "note": "proposals_per_s includes charts, parsing and the screen backtest of each proposal"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--charts", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--proposals", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(2)
    make_ctx = market_context()
    with tempfile.TemporaryDirectory() as d:
        res = {k: bench(k, Path(d), args.charts, args.steps) for k in FAMILIES}
        for k in FAMILIES:
            res[k]["proposer"] = bench_proposer(k, Path(d), args.proposals, make_ctx)
    for k, r in res.items():
        print(f"{k:10s} analyse {r['analyze_charts_per_s']:7.2f} charts/s (unconstrained {r['unconstrained_charts_per_s']:.2f}),"
              f" score {r['score_charts_per_s']:.1f}/s, embed {r['embed_charts_per_s']:.1f}/s,"
              f" LoRA {r['lora_steps_per_s']:.2f} steps/s, {r['valid_answers']}/{r['charts']} answers parse", flush=True)
        q = r["proposer"]
        print(f"{k:10s} propose {q['proposals_per_s']:7.3f} strategies/s ({q['tokens_per_proposal']:.0f} tokens each),"
              f" {q['parsed']}/{q['proposals']} parse and validate, {q['distinct']} distinct", flush=True)
    out = {
        "bench": "vlm", "device": "cpu", "threads": 2, "model": "tiny random checkpoints (~0.2M weights)",
        "charts_per_s": res["minicpm_v"]["analyze_charts_per_s"], "lora_steps_per_s": res["minicpm_v"]["lora_steps_per_s"],
        "ratio": res["minicpm_v"]["ratio"],
        "proposals_per_s": res["minicpm_v"]["proposer"]["proposals_per_s"],
        "tokens_per_proposal": res["minicpm_v"]["proposer"]["tokens_per_proposal"],
        "ratio_note": "unconstrained generate s/token / constrained (llguidance) s/token, same model and charts",
        "per_model": res,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
