"""ChartVLM: one loaded vision-language checkpoint and what aio does with it.

- :meth:`ChartVLM.analyze` - constrained generation of the JSON answer per chart;
- :meth:`ChartVLM.direction_logits` - log-likelihood of "down" / "flat" / "up" as the
  answer's direction (one teacher-forced pass, logits only at the scored tokens);
  temperature-scaled, these are the run's ``model.*`` probabilities;
- :meth:`ChartVLM.embed` - pooled vision-tower features per chart (pattern library);
- :meth:`ChartVLM.training_batch` / :meth:`ChartVLM.answer_loss` - LoRA fine-tuning.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import structlog
import torch
import torch.nn.functional as F

from aio.errors import AioError
from aio.vlm import lora as lora_ops
from aio.vlm.config import DIRECTIONS, VLMConfig
from aio.vlm.constrained import GrammarLogitsProcessor, GrammarTokenizer, lark_to_grammar
from aio.vlm.loading import (
    MINICPM_NATIVE,
    check_family,
    checkpoint_size,
    load_model,
    load_processor,
    read_config_json,
    resolve_checkpoint,
)
from aio.vlm.memory import GiB, MemoryPlan, ModelShape, free_memory, plan_memory
from aio.vlm.prompt import (
    IGNORE,
    encode_prompts,
    encode_with_continuations,
    end_token_ids,
    prompt_texts,
    template_parts,
    to_pil,
)
from aio.vlm.schema import Answer, AnswerSpec, direction_prefix, lark_grammar, max_answer_chars, parse_answer

log = structlog.get_logger(__name__)


def _text_config(raw: dict[str, Any]) -> dict[str, Any]:
    tc = raw.get("text_config") or raw.get("llm_config") or raw
    return tc if isinstance(tc, dict) else raw


def checkpoint_id(path: Path, raw: dict[str, Any], extra: Any = None) -> str:
    """Deterministic id of a base checkpoint: config, weight headers and weight bytes
    (all of them up to 64 MiB per file, else size + first/last MiB; a hub snapshot's
    commit hash is its folder name and counts too)."""
    h = hashlib.sha256()
    h.update(json.dumps(raw, sort_keys=True).encode())
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    if path.parent.name == "snapshots":
        h.update(path.name.encode())
    for f in sorted(path.glob("*.safetensors")):
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            if size <= 64 * 2**20:
                h.update(fh.read())
            else:
                h.update(fh.read(2**20))
                fh.seek(size - 2**20)
                h.update(fh.read())
    return h.hexdigest()[:16]


def _device(cfg: VLMConfig) -> str:
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise AioError("config key model.device=cuda but no CUDA GPU is visible; use model.device=cpu or auto")
    return cfg.device


class ChartVLM:
    def __init__(self, cfg: VLMConfig, family: str, spec: AnswerSpec, *, training: bool = False,
                 plan: MemoryPlan | None = None) -> None:
        self.cfg, self.family, self.spec = cfg, family, spec
        self.path = resolve_checkpoint(cfg.name_or_path, cfg.revision, cfg.download)
        self.raw = read_config_json(self.path)
        remote = check_family(self.raw, family, cfg.trust_remote_code, cfg.name_or_path)
        self.processor = load_processor(self.path, self.raw, remote)
        tok = self.processor.tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self.parts = template_parts(self.processor, cfg.prompt)
        self.plan = plan or self._plan(training)
        log.info("memory plan", model=cfg.name_or_path, **self.plan.as_dict())
        torch.manual_seed(cfg.seed)
        self.model = load_model(self.path, self.raw, self.plan, remote, cfg.attn_implementation).eval()
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        self.end_ids = end_token_ids(self.processor, self.parts.end_text, gen_eos)
        self.peft: Any = None
        self.adapter_id: str | None = None
        self.merged = False
        emb = cfg.embedding
        self.base_id = checkpoint_id(self.path, self.raw, {"pool": emb.pool, "dim": emb.dim, "seed": emb.seed,
                                                           "normalize": emb.normalize, "image_size": cfg.image_size})
        self.grammar = lark_to_grammar(lark_grammar(spec))
        self._gtok: GrammarTokenizer | None = None
        self._proj: torch.Tensor | None = None

    # -- setup ------------------------------------------------------------------------
    def _plan(self, training: bool) -> MemoryPlan:
        cfg = self.cfg
        device = _device(cfg)
        n_params, _ = checkpoint_size(self.path)
        tc = _text_config(self.raw)
        hidden, layers = int(tc.get("hidden_size", 2048)), int(tc.get("num_hidden_layers", 24))
        vocab = int(tc.get("vocab_size", 32000))
        n_targets = 7 if "all-linear" in cfg.lora.targets else len(cfg.lora.targets)
        trainable = 2 * cfg.lora.r * hidden * n_targets * layers if training else 0
        free, bf16 = free_memory(device)
        if cfg.memory.vram_gb is not None:
            free = cfg.memory.vram_gb * GiB
        probe = self._probe_prompt_tokens()
        answer = max_answer_chars(self.spec) + 4
        tr = cfg.train
        return plan_memory(
            ModelShape(n_params or 1, hidden, layers, vocab, trainable), free, device=device, training=training,
            needed_seq_len=probe + answer, answer_tokens=answer, bf16_supported=bf16, dtype=cfg.memory.dtype,
            quantization=cfg.memory.quantization, qlora=cfg.finetune == "qlora",
            gradient_checkpointing=tr.gradient_checkpointing, target_batch=cfg.memory.target_batch,
            batch_size=tr.batch_size if training else cfg.generation.batch_size,
            grad_accum=tr.grad_accum, max_seq_len=tr.max_seq_len, headroom=cfg.memory.headroom)

    def _probe_prompt_tokens(self) -> int:
        """Prompt length (image tokens included) of one chart at the configured size."""
        from PIL import Image

        side = self.cfg.image_size or 448
        texts = prompt_texts(self.processor, self.cfg.prompt, [self.fill()], self.parts.lead)
        enc = encode_prompts(self.processor, [Image.new("RGB", (side, side), "white")], texts)
        return int(enc["input_ids"].shape[1])

    @property
    def net(self) -> Any:
        return self.peft if self.peft is not None else self.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def model_id(self) -> str:
        """Id recorded with this model's embeddings and predictions: the adapter hash when
        one is active (merged or not), else the base checkpoint's id."""
        return self.adapter_id or self.base_id

    @property
    def grammar_tokenizer(self) -> GrammarTokenizer:
        if self._gtok is None:
            vocab = max(int(self.model.get_output_embeddings().weight.shape[0]), len(self.processor.tokenizer))
            self._gtok = GrammarTokenizer(self.processor.tokenizer, vocab, self.end_ids)
        return self._gtok

    def fill(self, symbol: str = "EURUSD", timeframe: str = "1m", horizon: int | None = None) -> dict[str, Any]:
        return {"patterns": ", ".join(self.spec.patterns), "horizon": horizon or self.spec.horizons[0],
                "symbol": symbol, "timeframe": timeframe}

    def _images(self, images: Sequence[Any]) -> list[Any]:
        return [to_pil(im, self.cfg.image_size) for im in images]

    def _to_device(self, enc: Mapping[str, Any]) -> dict[str, Any]:
        dtype = next(p.dtype for p in self.model.parameters() if p.dtype.is_floating_point)
        out = {}
        for k, v in enc.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device)
                if v.dtype.is_floating_point:
                    v = v.to(dtype)
            out[k] = v
        return out

    # -- generation ------------------------------------------------------------------
    @torch.no_grad()
    def generate_texts(self, images: Sequence[Any], fills: Sequence[Mapping[str, Any]] | None = None,
                       constrained: bool | None = None) -> list[str]:
        from transformers import LogitsProcessorList

        g = self.cfg.generation
        constrained = g.constrained if constrained is None else constrained
        pil = self._images(images)
        fills = list(fills) if fills is not None else [self.fill()] * len(pil)
        out_texts: list[str] = []
        tok = self.processor.tokenizer
        max_new = g.max_new_tokens or (max_answer_chars(self.spec) + 2)
        self.net.eval()
        for s in range(0, len(pil), g.batch_size):
            imgs, fl = pil[s:s + g.batch_size], fills[s:s + g.batch_size]
            enc = self._to_device(encode_prompts(self.processor, imgs, prompt_texts(self.processor, self.cfg.prompt, fl, self.parts.lead)))
            procs = LogitsProcessorList([GrammarLogitsProcessor(self.grammar_tokenizer, self.grammar, len(imgs))]) if constrained else None
            kw = {"do_sample": g.do_sample}
            if g.do_sample:
                kw["temperature"] = g.temperature
            out = self.net.generate(**enc, max_new_tokens=max_new, eos_token_id=self.end_ids,
                                    pad_token_id=tok.pad_token_id, logits_processor=procs, **kw)
            new = out[:, enc["input_ids"].shape[1]:]
            out_texts += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
        return out_texts

    def analyze(self, images: Sequence[Any], fills: Sequence[Mapping[str, Any]] | None = None) -> list[Answer]:
        """One schema-valid answer per chart (constrained decoding)."""
        return [parse_answer(t, self.spec) for t in self.generate_texts(images, fills, constrained=True)]

    # -- scoring ---------------------------------------------------------------------
    def _base(self) -> Any:
        return getattr(self.model, self.model.base_model_prefix)

    def _continuation_logprobs(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Per-token log-probabilities of the labelled tokens (B, L-1), 0 elsewhere; logits
        are computed only at those positions (vocabularies are large)."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        hidden = self._base()(**inputs, use_cache=False)[0]
        labels = batch["labels"][:, 1:]
        sel = labels != IGNORE
        h = hidden[:, :-1][sel]
        logits = self.model.get_output_embeddings()(h).float()
        lp = torch.zeros(labels.shape, dtype=torch.float32, device=hidden.device)
        lp[sel] = torch.log_softmax(logits, dim=-1).gather(1, labels[sel][:, None])[:, 0]
        return lp

    @torch.no_grad()
    def direction_logits(self, images: Sequence[Any], fills: Sequence[Mapping[str, Any]] | None = None) -> np.ndarray:
        """(n, 3) log-likelihoods of the answer starting with direction down / flat / up."""
        pil = self._images(images)
        fills = list(fills) if fills is not None else [self.fill()] * len(pil)
        out = []
        self.net.eval()
        step = max(1, self.cfg.generation.batch_size)
        for s in range(0, len(pil), step):
            imgs, fl = pil[s:s + step], fills[s:s + step]
            texts = prompt_texts(self.processor, self.cfg.prompt, fl, self.parts.lead)
            rep_imgs = [im for im in imgs for _ in DIRECTIONS]
            rep_texts = [t for t in texts for _ in DIRECTIONS]
            conts = [direction_prefix() + d for _ in imgs for d in DIRECTIONS]
            batch = self._to_device(encode_with_continuations(self.processor, rep_imgs, rep_texts, conts))
            lp = self._continuation_logprobs(batch).sum(dim=1)
            out.append(lp.view(len(imgs), len(DIRECTIONS)).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(DIRECTIONS)))

    # -- training --------------------------------------------------------------------
    def training_batch(self, images: Sequence[Any], fills: Sequence[Mapping[str, Any]], answers: Sequence[str]) -> dict[str, Any]:
        """Tokenised rows: labels on ``answer + end-of-turn`` only."""
        texts = prompt_texts(self.processor, self.cfg.prompt, fills, self.parts.lead)
        conts = [a + self.parts.end_text for a in answers]
        return encode_with_continuations(self.processor, self._images(images), texts, conts, self.plan.max_seq_len)

    def answer_loss(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Mean cross-entropy over the answer tokens."""
        lp = self._continuation_logprobs(self._to_device(batch))
        n = (batch["labels"][:, 1:] != IGNORE).sum()
        return -lp.sum() / n.clamp(min=1).to(lp.device)

    def enable_lora(self) -> Any:
        """Fresh adapters on the base weights (an earlier adapter is removed first)."""
        if self.peft is not None:
            self.model = lora_ops.unload(self.peft)
            self.peft = None
        quantized = self.plan.quantization in ("4bit", "8bit")
        self.peft = lora_ops.apply_lora(self.model, self.cfg.lora, quantized, self.plan.gradient_checkpointing)
        self.adapter_id = lora_ops.adapter_hash(self.peft, self.base_id)
        return self.peft

    def refresh_adapter_id(self) -> str:
        self.adapter_id = lora_ops.adapter_hash(self.peft, self.base_id)
        return self.adapter_id

    def load_adapter(self, folder: str | Path) -> str:
        if self.peft is not None:
            self.model = lora_ops.unload(self.peft)
        self.peft = lora_ops.load_adapter(self.model, folder)
        return self.refresh_adapter_id()

    def save_adapter(self, folder: str | Path) -> Path:
        if self.peft is None:
            raise AioError("no adapter to save: enable or load one first")
        path = lora_ops.save_adapter(self.peft, folder)
        (Path(path) / "aio_model.json").write_text(json.dumps(
            {"model_id": self.refresh_adapter_id(), "base_id": self.base_id, "base": self.cfg.name_or_path}, indent=2))
        return path

    def merge_adapter(self) -> None:
        """Fold the adapter into the base weights; the model id stays the adapter's."""
        if self.peft is None:
            raise AioError("no adapter to merge")
        aid = self.refresh_adapter_id()
        self.model = lora_ops.merge(self.peft)
        self.peft = None
        self.adapter_id, self.merged = aid, True

    # -- embeddings ------------------------------------------------------------------
    def _vision_features(self, pil: list[Any]) -> list[torch.Tensor]:
        """Per chart: the vision tower's patch features (tokens, width)."""
        ip = self.processor.image_processor
        if self.raw.get("model_type") in MINICPM_NATIVE:
            enc = ip(pil, return_tensors="pt")
            feats = self.model.get_image_features(enc["pixel_values"].to(self.device, self._fdtype()),
                                                  enc["target_sizes"].to(self.device))
            lhs = feats.last_hidden_state[0]
            ts = enc["target_sizes"].long()
            full = (ts[:, 0] * ts[:, 1]).tolist()
            merged = ((ts[:, 0] // 2) * (ts[:, 1] // 2)).tolist()
            lens = full if sum(full) == lhs.shape[0] else merged
            if sum(lens) != lhs.shape[0]:
                raise AioError(f"MiniCPM-V vision features ({lhs.shape[0]} tokens) do not split by target sizes {ts.tolist()}")
            per_slice = list(torch.split(lhs, lens))
            out, k = [], 0
            for n in enc["num_patches_per_image"]:
                out.append(torch.cat(per_slice[k:k + int(n)]))
                k += int(n)
            return out
        import inspect

        sig = inspect.signature(self.model.get_image_features).parameters

        def run(imgs: list[Any]) -> torch.Tensor:
            enc = ip(imgs, return_tensors="pt")
            kw = {k: v for k, v in self._to_device(dict(enc)).items() if k in sig}
            f = self.model.get_image_features(**kw)
            return f.last_hidden_state if hasattr(f, "last_hidden_state") and f.last_hidden_state is not None else f[0]

        lhs = run(pil)
        if lhs.dim() == 3 and lhs.shape[0] == len(pil):
            return [x for x in lhs]
        return [run([im]).reshape(-1, lhs.shape[-1]) for im in pil]

    def _fdtype(self) -> torch.dtype:
        return next(p.dtype for p in self.model.parameters() if p.dtype.is_floating_point)

    @torch.no_grad()
    def embed(self, images: Sequence[Any]) -> np.ndarray:
        """(n, dim) float32 pooled vision-tower features (L2-normalised unless configured off)."""
        e = self.cfg.embedding
        pil = self._images(images)
        rows = []
        step = max(1, self.cfg.generation.batch_size)
        self.net.eval()
        for s in range(0, len(pil), step):
            for f in self._vision_features(pil[s:s + step]):
                f = f.float().reshape(-1, f.shape[-1])
                rows.append(f.mean(0) if e.pool == "mean" else f.max(0).values)
        if not rows:
            return np.zeros((0, e.dim or 0), dtype=np.float32)
        x = torch.stack(rows).cpu()
        if e.dim is not None and e.dim != x.shape[1]:
            x = x @ self._projection(x.shape[1], e.dim)
        if e.normalize:
            x = F.normalize(x, dim=1)
        return x.numpy().astype(np.float32)

    def _projection(self, width: int, dim: int) -> torch.Tensor:
        """Fixed Gaussian random projection (Johnson-Lindenstrauss: keeps cosine similarity)."""
        if self._proj is None or self._proj.shape != (width, dim):
            g = torch.Generator().manual_seed(self.cfg.embedding.seed)
            self._proj = torch.randn(width, dim, generator=g) / math.sqrt(dim)
        return self._proj

    @property
    def embedding_dim(self) -> int:
        if self.cfg.embedding.dim is not None:
            return int(self.cfg.embedding.dim)
        from PIL import Image

        side = self.cfg.image_size or 448
        return int(self._vision_features([Image.new("RGB", (side, side), "white")])[0].shape[-1])
