"""LoRA adapters with peft: which modules, save / load / merge, and the adapter's id.

The id of a fine-tuned model is a hash of its adapter weights (and of the base it was
trained on), so two runs that produce the same adapter share an id and a changed
adapter never reuses one; it is the ``model_id`` of the embeddings the run writes to
the pattern library.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aio.errors import AioError
from aio.store.ids import model_id_from_weights
from aio.vlm.config import LoraSettings

LANGUAGE_PARTS = ("language_model", "text_model")
NEVER = ("lm_head", "embed_tokens", "wte")


def target_modules(model: nn.Module, lora: LoraSettings) -> list[str]:
    """Full names of the linear layers that get adapters."""
    names = []
    has_lang = any(any(p in n.split(".") for p in LANGUAGE_PARTS) for n, _ in model.named_modules())
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear) and type(mod).__name__ not in ("Linear8bitLt", "Linear4bit"):
            continue
        parts = name.split(".")
        if parts[-1] in NEVER:
            continue
        if lora.language_only and has_lang and not any(p in parts for p in LANGUAGE_PARTS):
            continue
        if "all-linear" in lora.targets or parts[-1] in lora.targets:
            names.append(name)
    if not names:
        raise AioError(f"config key model.lora.targets={lora.targets!r} matches no linear layer of this model"
                       f"{' language model' if lora.language_only else ''}; names look like "
                       f"{sorted({n.split('.')[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})[:12]}")
    return names


def apply_lora(model: nn.Module, lora: LoraSettings, quantized: bool = False, gradient_checkpointing: bool = False) -> Any:
    """``model`` wrapped by peft with fresh adapters; only they require grad."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias=lora.bias,
                     target_modules=target_modules(model, lora), task_type=None)
    peft_model = get_peft_model(model, cfg)
    if gradient_checkpointing:
        # transformers >= 5.x names it activation checkpointing; the old name still works elsewhere.
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return peft_model


def adapter_state(peft_model: Any) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu() for k, v in get_peft_model_state_dict(peft_model).items()}


def adapter_hash(peft_model_or_state: Any, base_id: str, n: int = 16) -> str:
    state = peft_model_or_state if isinstance(peft_model_or_state, dict) else adapter_state(peft_model_or_state)
    return hashlib.sha256(f"{base_id}|{model_id_from_weights(state, n=64)}".encode()).hexdigest()[:n]


def save_adapter(peft_model: Any, folder: str | Path) -> Path:
    folder = Path(folder)
    peft_model.save_pretrained(folder)
    return folder


def load_adapter(model: nn.Module, folder: str | Path, trainable: bool = False) -> Any:
    from peft import PeftModel

    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise AioError(f"{folder} holds no LoRA adapter (adapter_config.json missing); train one with "
                       f"model.finetune=lora or point model.adapter at an adapter folder")
    return PeftModel.from_pretrained(model, folder, is_trainable=trainable)


def merge(peft_model: Any) -> nn.Module:
    """Base model with the adapter folded into its weights (no peft wrapper left)."""
    return peft_model.merge_and_unload()


def unload(peft_model: Any) -> nn.Module:
    """Base model with the adapter removed (weights as before it was applied)."""
    return peft_model.unload()
