"""Typed configs of the vision-language model plugins (Hydra group ``model``: minicpm_v, hf_vlm).

Both plugins share :class:`VLMConfig`; they differ in which checkpoints they accept
(``minicpm_v``: transformers' native MiniCPM-V 4.6/4.7 classes; ``hf_vlm``: any
``AutoModelForImageTextToText`` checkpoint) and in their defaults (LoRA targets,
prompt).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from aio.config import param
from aio.errors import ConfigError

DIRECTIONS = ["down", "flat", "up"]  # class order of the dataset's dir_<h> labels (0, 1, 2)

DEFAULT_PATTERNS = [
    "none", "uptrend", "downtrend", "range", "breakout_up", "breakout_down", "double_top", "double_bottom",
    "head_and_shoulders", "inverse_head_and_shoulders", "ascending_triangle", "descending_triangle",
    "symmetrical_triangle", "bull_flag", "bear_flag", "rising_wedge", "falling_wedge", "reversal_up",
    "reversal_down",
]


@dataclass
class AnswerConfig:
    """The structured answer: every generated answer is one JSON object of this shape."""

    patterns: list[str] = param(default_factory=lambda: list(DEFAULT_PATTERNS),
                                help="fixed pattern vocabulary the model picks from")
    horizons: Optional[list[int]] = param(None, help="allowed horizons in bars; null: the dataset's label horizons")
    reason_max_chars: int = param(80, ge=1, le=400, help="the short reason is at most this many characters")
    confidence_decimals: int = param(2, ge=1, le=4, help="digits after the point of the stated confidence")

    def __post_init__(self) -> None:
        if not self.patterns or len(set(self.patterns)) != len(self.patterns):
            raise ConfigError(f"config key model.answer.patterns={self.patterns!r} must be a non-empty list of distinct names")
        bad = [p for p in self.patterns if not p or '"' in p or "\\" in p]
        if bad:
            raise ConfigError(f"config key model.answer.patterns: {bad!r} are not allowed (empty, or with a quote/backslash)")


@dataclass
class PromptConfig:
    """Prompt templates (``{patterns}``, ``{horizon}``, ``{symbol}``, ``{timeframe}`` are filled in)."""

    name: str = "chart_json"
    system: Optional[str] = param(
        "You are an FX chart analyst. You answer with one JSON object and nothing else.",
        help="system message; null for models whose template has no system role")
    user: str = param(
        "The chart shows {symbol} {timeframe} candles; the last bar is the decision bar. "
        "Classify the chart pattern as one of: {patterns}. Predict the direction of the close "
        "{horizon} bars ahead (up, flat or down), your confidence between 0 and 1, and a short reason. "
        "Answer as JSON with keys direction, confidence, pattern, horizon, reason.",
        help="user message; the chart image comes before it")


@dataclass
class GenerationConfig:
    constrained: bool = param(True, help="constrain decoding to the answer grammar (llguidance); false only for benchmarks")
    max_new_tokens: Optional[int] = param(None, ge=8, help="null: the grammar's longest answer (always enough)")
    do_sample: bool = param(False, help="greedy decoding unless true")
    temperature: float = param(1.0, gt=0.0, le=10.0)
    batch_size: int = param(8, ge=1, le=1024, help="charts per generate() call")


@dataclass
class LoraSettings:
    r: int = param(8, ge=1, le=1024)
    alpha: int = param(16, ge=1, le=4096)
    dropout: float = param(0.05, ge=0.0, lt=1.0)
    targets: list[str] = param(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
                               help="module names (suffixes) that get adapters; 'all-linear' for every linear layer")
    language_only: bool = param(True, help="adapt only the language model (the vision tower and merger stay frozen)")
    bias: str = param("none", choices=["none", "all", "lora_only"])
    merge: bool = param(False, help="merge the adapter into the base weights after training")


@dataclass
class TrainSettings:
    lr: float = param(2e-4, gt=0.0, le=1.0)
    weight_decay: float = param(0.0, ge=0.0)
    max_steps: int = param(200, ge=1, help="optimizer steps per fold")
    batch_size: Optional[int] = param(None, ge=1, help="null: from the memory plan")
    grad_accum: Optional[int] = param(None, ge=1, help="null: from the memory plan")
    max_seq_len: Optional[int] = param(None, ge=32, help="null: from the memory plan")
    gradient_checkpointing: bool = param(True, help="recompute activations in backward (less memory, ~30% slower)")
    max_train_rows: Optional[int] = param(None, ge=1, help="cap on fitting rows per fold (latest rows kept)")
    confidence_scale_atr: float = param(1.0, gt=0.0, help="training target confidence = 0.5 + 0.5*min(1, |fwd_ret_atr|/scale)")


@dataclass
class MemorySettings:
    """Inputs of the GPU memory plan (see aio.vlm.memory.plan_memory)."""

    vram_gb: Optional[float] = param(None, gt=0.0, help="free GPU memory to plan for; null: measured")
    headroom: float = param(0.1, ge=0.0, lt=0.9, help="fraction of free memory kept unused")
    quantization: str = param("auto", choices=["auto", "none", "8bit", "4bit"],
                              help="base weights: auto picks the widest that fits (bitsandbytes, GPU only)")
    dtype: str = param("auto", choices=["auto", "float32", "bfloat16", "float16"])
    target_batch: int = param(16, ge=1, help="effective batch (batch x grad accumulation) the plan aims for")


@dataclass
class EmbeddingSettings:
    pool: str = param("mean", choices=["mean", "max"], help="pooling of the vision tower's patch features per chart")
    dim: Optional[int] = param(None, ge=2, help="null: the vision tower width; else a fixed random projection to dim")
    normalize: bool = param(True, help="L2-normalise (cosine search)")
    seed: int = param(0, ge=0, help="seed of the projection matrix (part of the model id)")


@dataclass
class CalibrationSettings:
    enabled: bool = param(True, help="fit a softmax temperature on the validation rows")
    max_rows: int = param(256, ge=1, help="validation rows scored for the temperature (latest kept)")


@dataclass
class VLMConfig:
    """A vision-language model analysing chart images."""

    name: str = "hf_vlm"
    name_or_path: str = param("HuggingFaceTB/SmolVLM-256M-Instruct",
                              help="local checkpoint folder or hub id (must be in the local hub cache unless download)")
    revision: Optional[str] = None
    download: bool = param(False, help="allow downloading a missing hub checkpoint (else a missing model is an error)")
    trust_remote_code: bool = param(False, help="only for checkpoints that are not native transformers classes")
    attn_implementation: Optional[str] = param(None, choices=[None, "eager", "sdpa", "flash_attention_2"])
    device: str = param("auto", choices=["auto", "cpu", "cuda"])
    image_size: Optional[int] = param(None, ge=16, le=4096, help="charts are resized to fit this square; null: as rendered")
    finetune: str = param("none", choices=["none", "lora", "qlora"], help="qlora: LoRA on 4-bit base weights (GPU)")
    adapter: Optional[str] = param(None, help="load this saved LoRA adapter folder instead of training one")
    seed: int = param(0, ge=0)
    label: Optional[str] = param(None, help="direction label column (dir_<h>); null: the dataset's first horizon")
    return_label: Optional[str] = param(None, help="realised return column; null: fwd_ret_pips_<h>")
    pattern_label: Optional[str] = param(None, help="dataset column holding a pattern name for training targets")
    folds: int = param(2, ge=1, le=100, help="walk-forward folds (as the other models)")
    scheme: str = param("expanding", choices=["expanding", "rolling"])
    val_fraction: float = param(0.2, ge=0.0, lt=0.9)
    ece_bins: int = param(15, ge=2, le=100)
    max_predict_rows: Optional[int] = param(None, ge=1, help="cap on predicted rows per fold (CPU smoke runs)")
    answer: AnswerConfig = field(default_factory=AnswerConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    memory: MemorySettings = field(default_factory=MemorySettings)
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)

    def __post_init__(self) -> None:
        if self.finetune == "qlora" and self.memory.quantization in ("none", "8bit"):
            raise ConfigError(
                f"config key model.finetune=qlora needs 4-bit base weights but model.memory.quantization="
                f"{self.memory.quantization}; set it to 4bit or auto"
            )


@dataclass
class MiniCPMVConfig(VLMConfig):
    """MiniCPM-V 4.6 / 4.7 on transformers' native classes (no remote code)."""

    name: str = "minicpm_v"
    name_or_path: str = param("openbmb/MiniCPM-V-4_6", help="local checkpoint folder or hub id")


@dataclass
class HFVLMConfig(VLMConfig):
    """Any AutoModelForImageTextToText checkpoint (SmolVLM, Idefics3, Qwen2.5/3-VL, LLaVA...)."""

    name: str = "hf_vlm"
