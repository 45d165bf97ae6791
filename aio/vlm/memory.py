"""GPU memory planning: dtype, quantisation, batch size, gradient accumulation, sequence length.

:func:`plan_memory` is a pure function of the numbers it is given (free memory, model
size and shape, what the run wants), so it is tested with fixed numbers; the run
measures free memory once (:func:`free_memory`) and logs the plan. When even the
smallest setting does not fit it raises :class:`MemoryPlanError` with the numbers and
what to change. The estimates are deliberately conservative:

- weights: bytes/param 4 (float32), 2 (bf16/fp16), 1.07 (8-bit) or 0.56 (4-bit NF4 with
  double quantisation), +5% for buffers and non-quantised layers;
- LoRA training state: 16 bytes per trainable parameter (fp32 master weight, gradient,
  two AdamW moments);
- activations per token (training): with gradient checkpointing each layer keeps its
  input (hidden x 2 bytes) and one layer is recomputed at a time (34 x hidden x 2 bytes,
  Korthikanti et al. 2022); without it every layer keeps 34 x hidden x 2 bytes; plus the
  float32 logits of the answer tokens (vocab x 4 bytes x 2 with their gradient);
- inference: KV cache 2 x layers x hidden x bytes per token, one layer's activations,
  and float32 logits of the last position.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from aio.errors import AioError

GiB = 1024**3
BYTES_PER_PARAM = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "8bit": 1.07, "4bit": 0.56}
OVERHEAD = 1.05
CUDA_CONTEXT = 0.5 * GiB  # CUDA context + allocator fragmentation reserve


class MemoryPlanError(AioError):
    """The model does not fit in the memory there is."""


@dataclass(frozen=True)
class ModelShape:
    n_params: int
    hidden: int
    layers: int
    vocab: int
    trainable_params: int = 0  # LoRA parameters (0 for inference)


@dataclass(frozen=True)
class MemoryPlan:
    device: str
    dtype: str
    quantization: str
    batch_size: int
    grad_accum: int
    max_seq_len: int
    gradient_checkpointing: bool
    weights_gb: float
    train_state_gb: float
    per_sample_gb: float
    total_gb: float
    budget_gb: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _weights_bytes(n_params: int, dtype: str, quantization: str) -> float:
    key = quantization if quantization in ("8bit", "4bit") else dtype
    return n_params * BYTES_PER_PARAM[key] * OVERHEAD


def per_sample_bytes(shape: ModelShape, seq_len: int, answer_tokens: int, training: bool, checkpointing: bool,
                     act_bytes: float) -> float:
    h, n = shape.hidden, shape.layers
    if training:
        layer_full = 34.0 * h * act_bytes / 2.0  # 34*h bytes per token at 16-bit, twice that in float32
        act = seq_len * ((n * h * act_bytes + layer_full) if checkpointing else n * layer_full)
        logits = answer_tokens * shape.vocab * 4.0 * 2.0
        return act + logits
    kv = 2.0 * n * h * act_bytes * seq_len
    layer = 34.0 * h * act_bytes / 2.0 * seq_len
    return kv + layer + shape.vocab * 4.0


def plan_memory(
    shape: ModelShape,
    free_bytes: float,
    *,
    device: str,
    training: bool,
    needed_seq_len: int,
    answer_tokens: int,
    bf16_supported: bool = True,
    dtype: str = "auto",
    quantization: str = "auto",
    qlora: bool = False,
    gradient_checkpointing: bool = True,
    target_batch: int = 16,
    batch_size: int | None = None,
    grad_accum: int | None = None,
    max_seq_len: int | None = None,
    headroom: float = 0.1,
) -> MemoryPlan:
    """The widest dtype and largest batch that fit ``free_bytes`` (see the module doc)."""
    if device not in ("cuda", "cpu"):
        raise ValueError(f"device must be cuda or cpu, got {device!r}")
    if dtype == "auto":
        dtype = ("bfloat16" if bf16_supported else "float16") if device == "cuda" else "float32"
    if device == "cpu" and dtype == "float16":
        raise MemoryPlanError("float16 on CPU is not supported for training or generation; use float32 or bfloat16")
    if qlora:
        if quantization in ("none", "8bit"):
            raise MemoryPlanError(f"QLoRA trains on 4-bit base weights; quantization={quantization} contradicts it")
        quantization = "4bit"
    if quantization in ("8bit", "4bit") and device != "cuda":
        raise MemoryPlanError(f"{quantization} base weights need bitsandbytes on a CUDA GPU; this run is on {device}: "
                              "set model.memory.quantization=none (and model.finetune=lora, not qlora)")
    seq = int(max_seq_len or needed_seq_len)
    if seq < needed_seq_len:
        raise MemoryPlanError(f"max_seq_len={seq} is shorter than one chart's prompt and answer ({needed_seq_len} tokens): "
                              "raise model.train.max_seq_len or lower model.image_size")
    budget = max(0.0, free_bytes * (1.0 - headroom) - (CUDA_CONTEXT if device == "cuda" else 0.0))
    act_bytes = 4.0 if dtype == "float32" else 2.0
    quant_options = [quantization] if quantization != "auto" else (["none", "8bit", "4bit"] if device == "cuda" else ["none"])
    state = shape.trainable_params * 16.0 if training else 0.0
    tried = []
    for q in quant_options:
        w = _weights_bytes(shape.n_params, dtype, q)
        sample = per_sample_bytes(shape, seq, answer_tokens, training, gradient_checkpointing, act_bytes)
        room = budget - w - state
        tried.append((q, w, sample))
        if room < sample:
            continue
        fit = int(room // sample)
        if batch_size is not None:
            if batch_size > fit:
                continue
            b = int(batch_size)
        else:
            b = 1 << int(math.floor(math.log2(max(1, min(fit, target_batch)))))
        acc = int(grad_accum) if grad_accum is not None else max(1, math.ceil(target_batch / b)) if training else 1
        total = w + state + b * sample
        return MemoryPlan(device, dtype, q, b, acc, seq, bool(gradient_checkpointing and training), round(w / GiB, 3),
                          round(state / GiB, 3), round(sample / GiB, 4), round(total / GiB, 3), round(budget / GiB, 3))
    q, w, sample = tried[-1]
    need = (w + state + sample * (batch_size or 1)) / GiB
    hints = []
    if device == "cuda" and quantization not in ("4bit", "auto"):
        hints.append("model.memory.quantization=4bit")
    if training and not gradient_checkpointing:
        hints.append("model.train.gradient_checkpointing=true")
    if training and not qlora and device == "cuda":
        hints.append("model.finetune=qlora")
    if batch_size and batch_size > 1:
        hints.append("a smaller model.train.batch_size")
    hints += ["a smaller model.image_size", "a smaller checkpoint"]
    raise MemoryPlanError(
        f"the model does not fit: {shape.n_params / 1e9:.2f}B parameters as {q if q != 'none' else dtype} need "
        f"{w / GiB:.2f} GiB of weights + {state / GiB:.2f} GiB training state + {sample / GiB:.2f} GiB per "
        f"{'training' if training else 'inference'} sample of {seq} tokens = {need:.2f} GiB, but only "
        f"{budget / GiB:.2f} GiB of {free_bytes / GiB:.2f} GiB free {device} memory may be used "
        f"(headroom {headroom:.0%}). Try: {', '.join(hints)}"
    )


def free_memory(device: str) -> tuple[float, bool]:
    """(free bytes, bf16 supported) of ``device`` right now."""
    if device == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        return float(free), bool(torch.cuda.is_bf16_supported())
    import psutil

    return float(psutil.virtual_memory().available), True


def lora_param_count(modules: list[tuple[int, int]], r: int) -> int:
    """Trainable parameters of rank-``r`` adapters on linear layers of (in, out) features."""
    return sum(r * (i + o) for i, o in modules)
